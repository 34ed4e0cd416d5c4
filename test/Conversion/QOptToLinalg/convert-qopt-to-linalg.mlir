// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg | FileCheck %s
// Numerics of these lowerings are checked against the ONNX reference
// outputs (LayerNormalization, RMSNormalization) by test/e2e/node-tests.test.

// RMSNorm of bf16 data: statistics in f32, normalised value cast back, then
// scaled by gamma.
// CHECK-LABEL: func.func @rms_norm_bf16
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: arith.mulf {{.*}} : f32
// CHECK: arith.divf
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel"]
// CHECK: math.sqrt
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: arith.mulf {{.*}} : bf16
// CHECK-NOT: qopt.rms_norm
func.func @rms_norm_bf16(%x: tensor<?x8xbf16>, %g: tensor<8xbf16>) -> tensor<?x8xbf16> {
  %0 = qopt.rms_norm %x, %g : (tensor<?x8xbf16>, tensor<8xbf16>) -> tensor<?x8xbf16>
  return %0 : tensor<?x8xbf16>
}

// -----

// LayerNorm: two reductions (mean, then variance around it).
// CHECK-LABEL: func.func @layer_norm
// CHECK-COUNT-2: iterator_types = ["parallel", "reduction", "reduction"]
// CHECK: arith.subf
// CHECK: math.sqrt
// CHECK: arith.addf
// CHECK-NOT: qopt.layer_norm
func.func @layer_norm(%x: tensor<2x3x4xf32>, %g: tensor<3x4xf32>, %b: tensor<3x4xf32>) -> tensor<2x3x4xf32> {
  %0 = qopt.layer_norm %x, %g, %b axis = 1 : (tensor<2x3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<2x3x4xf32>
  return %0 : tensor<2x3x4xf32>
}

// -----

// Linear with bias: the bias initialises the accumulator; the product is a
// named op reading W as (n, k).
// CHECK-DAG: #[[X:.*]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG: #[[W:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-DAG: #[[Y:.*]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-LABEL: func.func @linear
// CHECK: %[[B:.*]] = linalg.generic
// CHECK: linalg.contract indexing_maps = [#[[X]], #[[W]], #[[Y]]] ins(%{{.*}}, %{{.*}} : tensor<?x4xf32>, tensor<8x4xf32>) outs(%[[B]] : tensor<?x8xf32>)
func.func @linear(%x: tensor<?x4xf32>, %w: tensor<8x4xf32>, %b: tensor<8xf32>) -> tensor<?x8xf32> {
  %0 = qopt.linear %x, %w, %b : (tensor<?x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// -----

// A quantized weight is dequantized from its storage (codes unpacked with a
// shift, an NF4 code looked up in its table), then multiplied; the argument
// is the storage.
// CHECK-LABEL: func.func @linear_quantized
// CHECK-SAME: (%{{.*}}: tensor<2x64xf32>, %[[D:.*]]: tensor<8x32xi8>, %[[S:.*]]: tensor<8xf32>)
// CHECK: %[[T:.*]] = arith.constant dense<[-1.000000e+00, {{.*}}, 1.000000e+00]> : tensor<16xf32>
// CHECK: linalg.generic {{.*}} ins(%[[D]], %[[S]] : tensor<8x32xi8>, tensor<8xf32>)
// CHECK: arith.shrui
// CHECK: tensor.extract %[[T]]
// CHECK-NOT: qopt.linear
func.func @linear_quantized(%x: tensor<2x64xf32>, %w: !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>) -> tensor<2x8xf32> {
  %0 = qopt.linear %x, %w : (tensor<2x64xf32>, !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// -----

// CHECK-LABEL: func.func @smooth
// CHECK: linalg.generic
// CHECK: arith.divf
func.func @smooth(%x: tensor<2x4xf32>, %s: tensor<4xf32>) -> tensor<2x4xf32> {
  %0 = qopt.smooth %x, %s : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  return %0 : tensor<2x4xf32>
}

// -----

// f32 over the last axis: H_8 = H_2 ⊗ H_4 as two products on views of the
// data ([2, 2, 4] with H_2 · (1/√8) on the middle axis, then [4, 4] with
// H_4), which the CPU target runs as BLAS calls; then the input's shape.
// CHECK-DAG: #[[HA:.*]] = affine_map<(d0, d1, d2, d3) -> (d1, d3)>
// CHECK-DAG: #[[XA:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d3, d2)>
// CHECK-DAG: #[[HB:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-DAG: #[[XB:.*]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-LABEL: func.func @hadamard_8
// CHECK-DAG: %[[H2:.*]] = arith.constant dense<{{\[\[}}0.353553{{[0-9]*}}, 0.353553{{[0-9]*}}], [0.353553{{[0-9]*}}, -0.353553{{[0-9]*}}]]> : tensor<2x2xf32>
// CHECK-DAG: %[[H4:.*]] = arith.constant dense<{{.*}}> : tensor<4x4xf32>
// CHECK: %[[V:.*]] = tensor.expand_shape %{{.*}} {{\[\[}}0, 1, 2]] output_shape [2, 2, 4] : tensor<16xf32> into tensor<2x2x4xf32>
// CHECK: linalg.generic {indexing_maps = [#[[HA]], #[[XA]], #{{.*}}], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%[[H2]], %[[V]] : tensor<2x2xf32>, tensor<2x2x4xf32>)
// CHECK: linalg.generic {indexing_maps = [#[[HB]], #[[XB]], #{{.*}}], iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[H4]], %{{.*}} : tensor<4x4xf32>, tensor<4x4xf32>)
// CHECK: tensor.reshape %{{.*}}(%{{.*}}) : (tensor<16xf32>, tensor<2xi64>) -> tensor<2x8xf32>
// CHECK-NOT: tensor.extract
// CHECK-NOT: qopt.hadamard
func.func @hadamard_8(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %0 = qopt.hadamard %x : (tensor<2x8xf32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// -----

// Blocks of 24 (H_12 ⊗ H_2) over a last axis of 48: views [4, 12, 2] and
// [48, 2].
// CHECK-LABEL: func.func @hadamard_24_products
// CHECK: tensor.expand_shape %{{.*}} output_shape [4, 12, 2] : tensor<96xf32> into tensor<4x12x2xf32>
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<12x12xf32>, tensor<4x12x2xf32>)
// CHECK: tensor.expand_shape %{{.*}} output_shape [48, 2] : tensor<96xf32> into tensor<48x2xf32>
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<2x2xf32>, tensor<48x2xf32>)
// CHECK-NOT: qopt.hadamard
func.func @hadamard_24_products(%x: tensor<2x48xf32>) -> tensor<2x48xf32> {
  %0 = qopt.hadamard %x block = 24 : (tensor<2x48xf32>) -> tensor<2x48xf32>
  return %0 : tensor<2x48xf32>
}

// -----

// Another axis than the last (or another element type): log2(n) butterfly
// stages, then the 1/sqrt(n) scaling.
// CHECK-LABEL: func.func @hadamard_8_axis0
// CHECK-COUNT-3: tensor.extract
// CHECK-NOT: qopt.hadamard
func.func @hadamard_8_axis0(%x: tensor<8x2xf32>) -> tensor<8x2xf32> {
  %0 = qopt.hadamard %x axis = 0 : (tensor<8x2xf32>) -> tensor<8x2xf32>
  return %0 : tensor<8x2xf32>
}

// -----

// n = 24 = 12 · 2 (H_12 ⊗ H_2) in f16: one butterfly stage within each
// pair, then the 12 × 12 Paley matrix across the pairs as a reduction whose
// maps split the index (blocks of 48 here), in f32.
// CHECK-DAG: #[[H:.*]] = affine_map<(d0, d1, d2) -> ((d1 mod 24) floordiv 2, d2)>
// CHECK-DAG: #[[X:.*]] = affine_map<(d0, d1, d2) -> (d0, d1 - ((d1 mod 24) floordiv 2) * 2 + d2 * 2)>
// CHECK-LABEL: func.func @hadamard_24
// CHECK: %[[C:.*]] = arith.constant dense<{{.*}}> : tensor<12x12xf32>
// CHECK-COUNT-2: tensor.extract
// CHECK-NOT: tensor.extract
// CHECK: linalg.generic {indexing_maps = [#[[H]], #[[X]], #{{.*}}], iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[C]], %{{.*}} : tensor<12x12xf32>, tensor<2x48xf16>)
// CHECK-NOT: qopt.hadamard
func.func @hadamard_24(%x: tensor<2x48xf16>) -> tensor<2x48xf16> {
  %0 = qopt.hadamard %x block = 24 : (tensor<2x48xf16>) -> tensor<2x48xf16>
  return %0 : tensor<2x48xf16>
}

// -----

// Quantized tensors cross function boundaries as their storage: the
// arguments, results and call operands of a !qopt.qtensor become its codes,
// scales and zero points; nothing of QOpt is left.
!z = !qopt.qtensor<8x8, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 4>, scales = f16>
// CHECK-LABEL: func.func private @layer
// CHECK-SAME: (%{{.*}}: tensor<3x8xf32>, %[[D:.*]]: tensor<8x4xi8>, %[[S:.*]]: tensor<8x2xf16>, %[[Z:.*]]: tensor<8x2xi8>) -> (tensor<3x8xf32>, tensor<8x4xi8>, tensor<8x2xf16>, tensor<8x2xi8>)
// CHECK: linalg.generic {{.*}} ins(%[[D]], %[[S]], %[[Z]] : tensor<8x4xi8>, tensor<8x2xf16>, tensor<8x2xi8>)
// CHECK: return %{{.*}}, %[[D]], %[[S]], %[[Z]]
// CHECK-LABEL: func.func @caller
// CHECK-SAME: (%[[X:.*]]: tensor<3x8xf32>, %[[D:.*]]: tensor<8x4xi8>, %[[S:.*]]: tensor<8x2xf16>, %[[Z:.*]]: tensor<8x2xi8>)
// CHECK: %[[R:.*]]:4 = call @layer(%[[X]], %[[D]], %[[S]], %[[Z]])
// CHECK: return %[[R]]#0, %[[R]]#1, %[[R]]#2, %[[R]]#3
// CHECK-NOT: qopt.
func.func private @layer(%x: tensor<3x8xf32>, %w: !z) -> (tensor<3x8xf32>, !z) {
  %y = qopt.linear %x, %w : (tensor<3x8xf32>, !z) -> tensor<3x8xf32>
  return %y, %w : tensor<3x8xf32>, !z
}
func.func @caller(%x: tensor<3x8xf32>, %d: tensor<8x4xi8>, %s: tensor<8x2xf16>, %zp: tensor<8x2xi8>) -> (tensor<3x8xf32>, !z) {
  %q = qopt.assemble %d, %s zero_points %zp : (tensor<8x4xi8>, tensor<8x2xf16>, tensor<8x2xi8>) -> !z
  %y, %w = func.call @layer(%x, %q) : (tensor<3x8xf32>, !z) -> (tensor<3x8xf32>, !z)
  return %y, %w : tensor<3x8xf32>, !z
}

// -----

// Loop-carried and conditional quantized tensors: scf.for, scf.if and
// scf.while carry the storage.
!q = !qopt.qtensor<8x8, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>
// CHECK-LABEL: func.func @loops
// CHECK-SAME: %[[D:[^:]*]]: tensor<8x4xi8>, %[[S:[^:]*]]: tensor<8xf32>
// CHECK: %[[F:.*]]:3 = scf.for {{.*}} iter_args(%{{.*}} = %{{.*}}, %[[LD:.*]] = %[[D]], %[[LS:.*]] = %[[S]]) -> (tensor<3x8xf32>, tensor<8x4xi8>, tensor<8xf32>)
// CHECK:   linalg.generic {{.*}} ins(%[[LD]], %[[LS]] : tensor<8x4xi8>, tensor<8xf32>)
// CHECK:   scf.yield %{{.*}}, %[[LD]], %[[LS]] : tensor<3x8xf32>, tensor<8x4xi8>, tensor<8xf32>
// CHECK: %[[I:.*]]:2 = scf.if %{{.*}} -> (tensor<8x4xi8>, tensor<8xf32>)
// CHECK:   scf.yield %[[F]]#1, %[[F]]#2
// CHECK: } else {
// CHECK:   scf.yield %[[D]], %[[S]]
// CHECK: scf.while (%{{.*}} = %[[I]]#0, %{{.*}} = %[[I]]#1, %{{.*}} = %{{.*}}) : (tensor<8x4xi8>, tensor<8xf32>, i32) -> (tensor<8x4xi8>, tensor<8xf32>, i32)
// CHECK: scf.condition(%{{.*}}) %{{.*}}, %{{.*}}, %{{.*}} : tensor<8x4xi8>, tensor<8xf32>, i32
// CHECK-NOT: qopt.
func.func @loops(%x: tensor<3x8xf32>, %w: !q, %n: index, %c: i1, %k: i32) -> (tensor<3x8xf32>, !q) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %r:2 = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %x, %v = %w) -> (tensor<3x8xf32>, !q) {
    %y = qopt.linear %acc, %v : (tensor<3x8xf32>, !q) -> tensor<3x8xf32>
    scf.yield %y, %v : tensor<3x8xf32>, !q
  }
  %p = scf.if %c -> !q {
    scf.yield %r#1 : !q
  } else {
    scf.yield %w : !q
  }
  %s:2 = scf.while (%v = %p, %j = %k) : (!q, i32) -> (!q, i32) {
    %zero = arith.constant 0 : i32
    %go = arith.cmpi sgt, %j, %zero : i32
    scf.condition(%go) %v, %j : !q, i32
  } do {
  ^bb0(%v: !q, %j: i32):
    %one = arith.constant 1 : i32
    %next = arith.subi %j, %one : i32
    scf.yield %v, %next : !q, i32
  }
  return %r#0, %s#0 : tensor<3x8xf32>, !q
}

// -----

// Branches forward the storage to their successors' arguments; a nested
// (double-quantized) scale takes its own storage values in turn.
!n = !qopt.qtensor<4x64, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<4, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>>
// CHECK-LABEL: func.func @branches
// CHECK-SAME: (%{{.*}}: i1, %[[A0:.*]]: tensor<4x32xi8>, %[[A1:.*]]: tensor<4xi8>, %[[A2:.*]]: tensor<1xf32>, %[[A3:.*]]: tensor<f32>, %[[B0:.*]]: tensor<4x32xi8>, %[[B1:.*]]: tensor<4xi8>, %[[B2:.*]]: tensor<1xf32>, %[[B3:.*]]: tensor<f32>)
// CHECK: cf.cond_br %{{.*}}, ^bb1(%[[A0]], %[[A1]], %[[A2]], %[[A3]] : {{.*}}), ^bb1(%[[B0]], %[[B1]], %[[B2]], %[[B3]] : {{.*}})
// CHECK: ^bb1(%[[D:.*]]: tensor<4x32xi8>, %[[SD:.*]]: tensor<4xi8>, %[[SS:.*]]: tensor<1xf32>, %[[O:.*]]: tensor<f32>):
// CHECK: return %[[D]], %[[SD]], %[[SS]], %[[O]]
func.func @branches(%c: i1, %a: !n, %b: !n) -> (tensor<4x32xi8>, tensor<4xi8>, tensor<1xf32>, tensor<f32>) {
  cf.cond_br %c, ^bb1(%a : !n), ^bb1(%b : !n)
^bb1(%q: !n):
  %d, %s = qopt.disassemble %q : !n -> tensor<4x32xi8>, !qopt.qtensor<4, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>
  %sd, %ss, %so = qopt.disassemble %s : !qopt.qtensor<4, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset> -> tensor<4xi8>, tensor<1xf32> offset tensor<f32>
  return %d, %sd, %ss, %so : tensor<4x32xi8>, tensor<4xi8>, tensor<1xf32>, tensor<f32>
}

// -----

// Dynamic rows: sizes come from the codes, and the scales are checked
// against them at run time.
!dq = !qopt.qtensor<?x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
// CHECK-LABEL: func.func @dynamic
// CHECK-SAME: (%{{.*}}: tensor<2x64xf32>, %[[D:.*]]: tensor<?x64xi8>, %[[S:.*]]: tensor<?xf32>)
// CHECK-DAG: %[[ROWS:.*]] = tensor.dim %[[D]], %c0
// CHECK-DAG: %[[N:.*]] = tensor.dim %[[S]], %c0
// CHECK: %[[EQ:.*]] = arith.cmpi eq, %[[N]], %[[ROWS]]
// CHECK: cf.assert %[[EQ]], "node 'fc' (qopt.linear): the quantized tensor's scales do not fit its shape (scales dimension 0, tensor dimension 0)"
// CHECK: tensor.empty(%[[ROWS]]) : tensor<?x64xf32>
func.func @dynamic(%x: tensor<2x64xf32>, %w: !dq) -> tensor<2x?xf32> {
  %0 = qopt.linear %x, %w : (tensor<2x64xf32>, !dq) -> tensor<2x?xf32> loc("fc")
  return %0 : tensor<2x?xf32>
}

// -----

// linalg.softmax (ONNX Softmax) is lowered here, late: the row maximum,
// the exponentials of the shifted row and their sum (accumulated in f32),
// then the quotient in the element type. Exponentials and quotients below
// the smallest normal float are 0, never subnormal (slow on Intel cores).
// CHECK-LABEL: func.func @softmax
// CHECK-DAG: %[[TINY:.*]] = arith.constant 1.17549435E-38 : f32
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-DAG: %[[LOGTINY:.*]] = arith.constant -87.3365402 : f32
// CHECK-NOT: linalg.softmax
// CHECK: arith.maximumf
// CHECK: arith.extf
// CHECK: %[[UNDER:.*]] = arith.cmpf olt, %[[D:.*]], %[[LOGTINY]] : f32
// CHECK: %[[E:.*]] = math.exp %[[D]] : f32
// CHECK: arith.select %[[UNDER]], %[[ZERO]], %[[E]] : f32
// CHECK: arith.addf
// CHECK: %[[Q:.*]] = arith.divf
// CHECK: %[[ABS:.*]] = math.absf %[[Q]] : f32
// CHECK: %[[SMALL:.*]] = arith.cmpf olt, %[[ABS]], %[[TINY]] : f32
// CHECK: arith.select %[[SMALL]], %[[ZERO]], %[[Q]] : f32
// CHECK: arith.truncf
func.func @softmax(%x: tensor<2x?xbf16>) -> tensor<2x?xbf16> {
  %c1 = arith.constant 1 : index
  %n = tensor.dim %x, %c1 : tensor<2x?xbf16>
  %e = tensor.empty(%n) : tensor<2x?xbf16>
  %0 = linalg.softmax dimension(1) ins(%x : tensor<2x?xbf16>) outs(%e : tensor<2x?xbf16>) -> tensor<2x?xbf16>
  return %0 : tensor<2x?xbf16>
}

// -----

// An embedding lookup checks its ids against the table's rows (negative ids
// count from the end; a check that reads the ids is marked so that a GPU
// target can make it on the device), then gathers rows, each id clamped
// into the table.
// CHECK-LABEL: func.func @embedding
// CHECK: arith.minsi
// CHECK: arith.maxsi
// CHECK: cf.assert %{{.*}}, "node 'wte' (qopt.embedding): an id is out of range (valid: -10 to 9)" {qopt.data_check}
// CHECK: linalg.generic
// CHECK: %[[WRAPPED:.*]] = arith.select
// CHECK: %[[BELOW:.*]] = arith.minsi %[[WRAPPED]], %c9 : index
// CHECK: %[[ROW:.*]] = arith.maxsi %[[BELOW]], %c0 : index
// CHECK: tensor.extract %arg1[%[[ROW]], %{{.*}}] : tensor<10x4xf32>
func.func @embedding(%ids: tensor<2x?xi64>, %w: tensor<10x4xf32>) -> tensor<2x?x4xf32> {
  %0 = qopt.embedding %ids, %w module "wte" : (tensor<2x?xi64>, tensor<10x4xf32>) -> tensor<2x?x4xf32> loc("wte")
  return %0 : tensor<2x?x4xf32>
}

// -----

// Position ids from a Range (start + i · delta, either operand order): the
// check compares the progression's ends with the table's rows (the first
// id and the last, whichever way delta goes; no ids, nothing to check),
// reading no ids: no min/max reduction.
// CHECK-LABEL: func.func @embedding_positions
// CHECK-NOT: arith.minsi
// CHECK: %[[N:.*]] = tensor.dim %[[IDS:.*]], %c0
// CHECK: %[[STEPS:.*]] = arith.index_cast %{{.*}} : index to i64
// CHECK: %[[PROD:.*]] = arith.muli %[[STEPS]], %arg3 : i64
// CHECK: %[[LAST:.*]] = arith.addi %arg2, %[[PROD]] : i64
// CHECK: %[[RISING:.*]] = arith.cmpi sge, %arg3, %{{.*}} : i64
// CHECK: %[[LO:.*]] = arith.select %[[RISING]], %arg2, %[[LAST]] : i64
// CHECK: %[[HI:.*]] = arith.select %[[RISING]], %[[LAST]], %arg2 : i64
// CHECK: %[[EMPTY:.*]] = arith.cmpi eq, %[[N]], %c0
// CHECK: arith.index_cast %[[LO]]
// CHECK: arith.index_cast %[[HI]]
// CHECK: %[[OK:.*]] = arith.ori %[[EMPTY]], %{{.*}} : i1
// CHECK: cf.assert %[[OK]], "node 'wpe' (qopt.embedding): an id is out of range (valid: -16 to 15)"{{$}}
// CHECK-NOT: arith.maxsi {{.*}} : i64
// CHECK: return
func.func @embedding_positions(%n: index, %w: tensor<16x4xf32>, %start: i64, %delta: i64) -> tensor<?x4xf32> {
  %e = tensor.empty(%n) : tensor<?xi64>
  %ids = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} outs(%e : tensor<?xi64>) {
  ^bb0(%out: i64):
    %i = linalg.index 0 : index
    %c = arith.index_cast %i : index to i64
    %m = arith.muli %delta, %c : i64
    %a = arith.addi %m, %start : i64
    linalg.yield %a : i64
  } -> tensor<?xi64>
  %y = qopt.embedding %ids, %w module "wpe" : (tensor<?xi64>, tensor<16x4xf32>) -> tensor<?x4xf32> loc("wpe")
  return %y : tensor<?x4xf32>
}

// -----

// Ids computed from something else than the index alone are reduced.
// CHECK-LABEL: func.func @embedding_computed
// CHECK: arith.minsi
// CHECK: arith.maxsi
// CHECK: cf.assert
func.func @embedding_computed(%x: tensor<?xi64>, %w: tensor<16x4xf32>) -> tensor<?x4xf32> {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?xi64>
  %e = tensor.empty(%n) : tensor<?xi64>
  %ids = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins(%x : tensor<?xi64>) outs(%e : tensor<?xi64>) {
  ^bb0(%in: i64, %out: i64):
    %i = linalg.index 0 : index
    %c = arith.index_cast %i : index to i64
    %a = arith.addi %in, %c : i64
    linalg.yield %a : i64
  } -> tensor<?xi64>
  %y = qopt.embedding %ids, %w module "wpe" : (tensor<?xi64>, tensor<16x4xf32>) -> tensor<?x4xf32> loc("wpe")
  return %y : tensor<?x4xf32>
}

// -----

// Attention: sizes the types leave open checked, Q·Kᵀ as a named product
// (one key/value head per query head), the mask read through its broadcast
// map, softmax over keys, then P·V.
// CHECK-DAG: #[[MASK:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, 0, d2, d3)>
// CHECK-LABEL: func.func @attention
// CHECK: cf.assert %{{.*}}, "node 'attn' (qopt.attention): K and V have different sequence lengths"
// CHECK: cf.assert %{{.*}}, "node 'attn' (qopt.attention): attn_mask does not broadcast to the scores"
// CHECK: %[[S:.*]] = linalg.contract
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[MASK]], #{{.*}}]{{.*}} ins(%[[S]], %arg3 : tensor<1x2x3x?xf32>, tensor<1x1x3x?xi1>)
// CHECK: arith.select
// CHECK: arith.cmpi ule
// CHECK: arith.maximumf
// CHECK: arith.cmpf olt
// CHECK: math.exp
// CHECK: arith.select
// CHECK: math.absf
// CHECK: arith.select
// CHECK: linalg.contract
func.func @attention(%q: tensor<1x2x3x4xf32>, %k: tensor<1x2x?x4xf32>, %v: tensor<1x2x?x4xf32>, %m: tensor<1x1x3x?xi1>) -> tensor<1x2x3x4xf32> {
  %0 = qopt.attention %q, %k, %v mask(%m) causal : (tensor<1x2x3x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>, tensor<1x1x3x?xi1>) -> tensor<1x2x3x4xf32> loc("attn")
  return %0 : tensor<1x2x3x4xf32>
}

// -----

// Grouped-query heads: query head h reads key/value head h / 2, a product
// the named ops cannot express (a linalg.generic).
// CHECK-DAG: #[[KV:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1 floordiv 2, d3, d4)>
// CHECK-LABEL: func.func @attention_gqa
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[KV]], #{{.*}}]
func.func @attention_gqa(%q: tensor<1x4x3x8xf32>, %k: tensor<1x2x5x8xf32>, %v: tensor<1x2x5x8xf32>) -> tensor<1x4x3x8xf32> {
  %0 = qopt.attention %q, %k, %v : (tensor<1x4x3x8xf32>, tensor<1x2x5x8xf32>, tensor<1x2x5x8xf32>) -> tensor<1x4x3x8xf32>
  return %0 : tensor<1x4x3x8xf32>
}
