// Neighbouring loop nests over the same space become one kernel where each
// element's iteration reads only what its own iterations wrote
// (scf-parallel-loop-fusion in qopt-cuda-codegen, after CSE has made the
// loops' bounds the same values).
// RUN: qopt-opt %s -split-input-file --qopt-cuda-codegen=emulate=true --mlir-print-ir-after=scf-parallel-loop-fusion -o /dev/null 2>&1 | FileCheck %s
// RUN: qopt-opt %s -split-input-file --qopt-cuda-codegen | FileCheck %s --check-prefix=HOST

// RMSNorm: the accumulator's zero initialization, the sum of squares and
// the mean are one kernel (a thread per row); the normalization, a thread
// per element, is the second.
// CHECK-LABEL: func.func @rms
// CHECK: scf.parallel (%[[R:.*]]) =
// CHECK-NEXT: memref.store %{{.*}}, %[[ACC:.*]][%[[R]]]
// CHECK-NEXT: scf.for
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: memref.store %{{.*}}, %[[ACC]][%[[R]]]
// CHECK: }
// CHECK: arith.divf
// CHECK: scf.reduce
// CHECK: scf.parallel (%{{.*}}, %{{.*}}) =
// CHECK: math.sqrt
// CHECK-NOT: scf.parallel
// CHECK: return
// HOST-LABEL: llvm.func @rms(
// HOST-COUNT-2: gpu.launch_func
// HOST-NOT: gpu.launch_func
// HOST: llvm.return
func.func @rms(%x: tensor<?x64xf32>, %g: tensor<64xf32>) -> tensor<?x64xf32> {
  %y = qopt.rms_norm %x, %g epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Row sums divided by the first row's: the second nest reads an element
// other iterations of the first write, so it stays a kernel of its own.
// CHECK-LABEL: func.func @first_row
// CHECK: scf.parallel
// CHECK: scf.parallel
// CHECK: memref.load %{{.*}}[%c0{{[_0-9]*}}]
// HOST-LABEL: llvm.func @first_row(
// HOST-COUNT-2: gpu.launch_func
// HOST-NOT: gpu.launch_func
// HOST: llvm.return
#m2 = affine_map<(i, j) -> (i, j)>
#r2 = affine_map<(i, j) -> (i)>
#m1 = affine_map<(i) -> (i)>
#c1 = affine_map<(i) -> (0)>
func.func @first_row(%x: tensor<8x8xf32>) -> tensor<8xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<8xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<8xf32>) -> tensor<8xf32>
  %s = linalg.generic {indexing_maps = [#m2, #r2], iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<8x8xf32>) outs(%init : tensor<8xf32>) {
  ^bb0(%in: f32, %acc: f32):
    %a = arith.addf %in, %acc : f32
    linalg.yield %a : f32
  } -> tensor<8xf32>
  %e2 = tensor.empty() : tensor<8xf32>
  %t = linalg.generic {indexing_maps = [#m1, #c1, #m1], iterator_types = ["parallel"]}
      ins(%s, %s : tensor<8xf32>, tensor<8xf32>) outs(%e2 : tensor<8xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %d = arith.divf %a, %b : f32
    linalg.yield %d : f32
  } -> tensor<8xf32>
  return %t : tensor<8xf32>
}
