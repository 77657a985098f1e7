/// <reference path="./interfaces/omega-brane-emit.d.ts" />
/// <reference path="./interfaces/omega-brane-handler.d.ts" />
/// <reference path="./interfaces/omega-brane-log.d.ts" />
/// <reference path="./interfaces/omega-brane-state.d.ts" />
/// <reference path="./interfaces/omega-brane-types.d.ts" />
declare module 'omega:brane/event-brane@0.1.0' {
  export type * as OmegaBraneEmit010 from 'omega:brane/emit@0.1.0'; // import omega:brane/emit@0.1.0
  export type * as OmegaBraneLog010 from 'omega:brane/log@0.1.0'; // import omega:brane/log@0.1.0
  export type * as OmegaBraneState010 from 'omega:brane/state@0.1.0'; // import omega:brane/state@0.1.0
  export type * as OmegaBraneTypes010 from 'omega:brane/types@0.1.0'; // import omega:brane/types@0.1.0
  export * as handler from 'omega:brane/handler@0.1.0'; // export omega:brane/handler@0.1.0
}
