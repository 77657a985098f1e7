/// <reference path="./omega-brane-types.d.ts" />
declare module 'omega:brane/emit@0.1.0' {
  export function emit(topic: string, payload: Uint8Array): string;
  export type EmitError = import('omega:brane/types@0.1.0').EmitError;
}
