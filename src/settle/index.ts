/**
 * Settlement: per-brane, per-deployer metering and signed, hash-chained receipts that a
 * third party verifies offline (`omega settle verify FILE`).
 */
export { Settlement, type MeteredUsage, type SettlementComponents, type SettlementInit } from './settlement.ts'
export { ReceiptStore, SETTLE_DB } from './store.ts'
export {
  GENESIS,
  exportReceipts,
  receiptBytes,
  receiptDigest,
  signReceipt,
  verifyExport,
  type ExportTrailer,
  type Receipt,
  type UsageLine,
  type VerifyReport
} from './receipt.ts'
export { SettlementVerificationError } from '../errors.ts'
