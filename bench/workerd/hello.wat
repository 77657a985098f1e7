;; The hello answer for the workerd baseline (bench/workerd.ts): a plain core module
;; that writes "hello from omega: " + the path + "\n" at offset 4096, as hello.wasm's
;; component does, and returns its length. Instantiated once and reused by the worker.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "hello from omega: ")
  (func (export "answer") (param $path i32) (param $len i32) (result i32)
    (memory.copy (i32.const 4096) (i32.const 0) (i32.const 18))
    (memory.copy (i32.const 4114) (local.get $path) (local.get $len))
    (i32.store8 (i32.add (i32.const 4114) (local.get $len)) (i32.const 10))
    (i32.add (local.get $len) (i32.const 19))))
