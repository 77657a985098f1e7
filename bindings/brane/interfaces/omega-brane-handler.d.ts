/// <reference path="./omega-brane-types.d.ts" />
declare module 'omega:brane/handler@0.1.0' {
  export function handle(event: Event): void;
  export type Event = import('omega:brane/types@0.1.0').Event;
  export type HandleError = import('omega:brane/types@0.1.0').HandleError;
}
