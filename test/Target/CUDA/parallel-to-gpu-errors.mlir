// RUN: not qopt-opt %s --pass-pipeline='builtin.module(func.func(qopt-parallel-to-gpu{block-size=100}))' 2>&1 | FileCheck %s
// CHECK: error: qopt-parallel-to-gpu: block-size=100 is not a multiple of 32 between 32 and 1024
func.func @f() {
  return
}
