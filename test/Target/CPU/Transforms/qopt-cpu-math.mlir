// RUN: qopt-opt %s --qopt-cpu-math | FileCheck %s

// CHECK-LABEL: func.func @math
// CHECK-NOT: math.powf
// CHECK-NOT: math.tanh
// CHECK-NOT: math.erf
// CHECK-NOT: math.exp
// CHECK: arith.mulf
// CHECK: return
func.func @math(%x: f32) -> (f32, f32, f32, f32) {
  %c3 = arith.constant 3.0 : f32
  %p = math.powf %x, %c3 : f32
  %t = math.tanh %x : f32
  %e = math.erf %x : f32
  %x2 = math.exp %x : f32
  return %p, %t, %e, %x2 : f32, f32, f32, f32
}
