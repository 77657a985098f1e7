;; hello: a WASI 0.2 HTTP component written by hand.
;;
;; This is the core module; scripts/build-examples.js embeds the `omega:worlds/http`
;; world (wit/omega.wit, i.e. wasi:http/proxy@0.2.12) and wraps it into a component.
;; Every request gets status 200, `content-type: text/plain` and the body
;; "hello from omega: <path-with-query>\n" ("hello from omega\n" when the request
;; has no path).
;;
;; Canonical ABI notes: results wider than one core value are written to a
;; "retptr" in linear memory (here the scratch area at 16 and 32); strings returned
;; by the host are allocated in guest memory through `cabi_realloc`.
(module
  (import "wasi:http/types@0.2.12" "[method]incoming-request.path-with-query"
    (func $path_with_query (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[resource-drop]incoming-request"
    (func $drop_request (param i32)))
  (import "wasi:http/types@0.2.12" "[constructor]fields"
    (func $fields_new (result i32)))
  (import "wasi:http/types@0.2.12" "[method]fields.append"
    (func $fields_append (param i32 i32 i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.12" "[constructor]outgoing-response"
    (func $response_new (param i32) (result i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-response.body"
    (func $response_body (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-body.write"
    (func $body_write (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[static]outgoing-body.finish"
    (func $body_finish (param i32 i32 i32 i32)))
  ;; result<own<outgoing-response>, error-code>, flattened: discriminant + the
  ;; joined payload slots of every error-code case
  (import "wasi:http/types@0.2.12" "[static]response-outparam.set"
    (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.12" "[method]output-stream.blocking-write-and-flush"
    (func $blocking_write_and_flush (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.12" "[resource-drop]output-stream"
    (func $drop_stream (param i32)))

  (memory (export "memory") 1)
  (data (i32.const 64) "content-type")
  (data (i32.const 80) "text/plain")
  (data (i32.const 96) "hello from omega: ")
  (data (i32.const 120) "\n")

  ;; bump allocator for strings the host hands us; the instance lives for one request
  (global $heap (mut i32) (i32.const 1024))

  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32)
    (local $need i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (local.set $need (i32.sub (global.get $heap) (i32.shl (memory.size) (i32.const 16))))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then
        (if (i32.eq
              (memory.grow (i32.shr_u (i32.add (local.get $need) (i32.const 65535)) (i32.const 16)))
              (i32.const -1))
          (then unreachable))))
    (if (local.get $old_size)
      (then
        (memory.copy (local.get $ptr) (local.get $old)
          (select (local.get $old_size) (local.get $size)
            (i32.lt_u (local.get $old_size) (local.get $size))))))
    (local.get $ptr))

  ;; write all of [ptr, ptr+len) to a stream, at most 4096 bytes per call as the
  ;; blocking-write-and-flush contract asks; any stream error traps
  (func $write (param $stream i32) (param $ptr i32) (param $len i32)
    (local $n i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (local.set $n
          (select (i32.const 4096) (local.get $len)
            (i32.gt_u (local.get $len) (i32.const 4096))))
        (call $blocking_write_and_flush (local.get $stream) (local.get $ptr) (local.get $n) (i32.const 32))
        (if (i32.load8_u (i32.const 32)) (then unreachable))
        (local.set $ptr (i32.add (local.get $ptr) (local.get $n)))
        (local.set $len (i32.sub (local.get $len) (local.get $n)))
        (br $more))))

  (func (export "wasi:http/incoming-handler@0.2.12#handle") (param $request i32) (param $outparam i32)
    (local $has_path i32)
    (local $path_ptr i32)
    (local $path_len i32)
    (local $fields i32)
    (local $response i32)
    (local $body i32)
    (local $stream i32)
    ;; option<string> at 16: tag u8, ptr at 20, len at 24
    (call $path_with_query (local.get $request) (i32.const 16))
    (local.set $has_path (i32.load8_u (i32.const 16)))
    (local.set $path_ptr (i32.load (i32.const 20)))
    (local.set $path_len (i32.load (i32.const 24)))
    (call $drop_request (local.get $request))

    (local.set $fields (call $fields_new))
    (call $fields_append (local.get $fields)
      (i32.const 64) (i32.const 12) (i32.const 80) (i32.const 10) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then unreachable))
    ;; status defaults to 200
    (local.set $response (call $response_new (local.get $fields)))
    (call $response_body (local.get $response) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then unreachable))
    (local.set $body (i32.load (i32.const 20)))
    (call $body_write (local.get $body) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then unreachable))
    (local.set $stream (i32.load (i32.const 20)))

    ;; ok(response): send the head, then stream the body
    (call $outparam_set (local.get $outparam)
      (i32.const 0) (local.get $response) (i32.const 0) (i64.const 0)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))

    (if (local.get $has_path)
      (then
        (call $write (local.get $stream) (i32.const 96) (i32.const 18))
        (call $write (local.get $stream) (local.get $path_ptr) (local.get $path_len)))
      (else
        (call $write (local.get $stream) (i32.const 96) (i32.const 16))))
    (call $write (local.get $stream) (i32.const 120) (i32.const 1))

    ;; a child stream must be dropped before its body is finished
    (call $drop_stream (local.get $stream))
    ;; finish(body, none): result<_, error-code> at 16
    (call $body_finish (local.get $body) (i32.const 0) (i32.const 0) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then unreachable)))
)
