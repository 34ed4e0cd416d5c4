// RUN: qopt-opt %s --qopt-quantize-weights="format=int4 group=4 asym=true" --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=INT4
// RUN: qopt-opt %s --qopt-quantize-weights="format=nf4 block=16 double-quant=true" --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=NF4
// RUN: qopt-opt %s --qopt-quantize-weights="format=int8 target-modules=k_proj" --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=INT8
// RUN: qopt-opt %s --qopt-quantize-weights="format=fp8-e4m3" --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=FP8
// RUN: qopt-opt %s --qopt-quantize-weights="format=int3 group=4" --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=INT3
// RUN: qopt-opt %s --qopt-quantize-weights="format=mxfp4" --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=MXFP4
// RUN: qopt-opt %s --qopt-quantize-weights="format=nvfp4" --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=NVFP4
// RUN: not qopt-opt %s --qopt-quantize-weights="format=mxfp4 block=16" 2>&1 | FileCheck %s --check-prefix=ERR-MX
// RUN: not qopt-opt %s --qopt-quantize-weights="format=nvfp4 per-channel=true" 2>&1 | FileCheck %s --check-prefix=ERR-NV
// RUN: qopt-opt %s --qopt-quantize-weights="format=int4 budget-bits=7" --mlir-elide-resource-strings-if-larger=1 2>&1 | FileCheck %s --check-prefix=BUDGET
// RUN: not qopt-opt %s --qopt-quantize-weights="format=nf4 budget-bits=4.5" 2>&1 | FileCheck %s --check-prefix=ERR-BUDGET-FMT
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int4 budget-bits=-1" 2>&1 | FileCheck %s --check-prefix=ERR-BUDGET-NEG
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int4 budget-bits=3" 2>&1 | FileCheck %s --check-prefix=ERR-BUDGET-LOW
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int4 group=8 per-channel=true" 2>&1 | FileCheck %s --check-prefix=ERR-PERCHANNEL
// Errors: every bad option, and a selection that quantizes nothing.
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int9" 2>&1 | FileCheck %s --check-prefix=ERR-INT9
// RUN: not qopt-opt %s --qopt-quantize-weights="format=fp8" 2>&1 | FileCheck %s --check-prefix=ERR-FMT
// RUN: not qopt-opt %s --qopt-quantize-weights="format=nf4 group=8" 2>&1 | FileCheck %s --check-prefix=ERR-GROUP
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int4 double-quant=true" 2>&1 | FileCheck %s --check-prefix=ERR-DQ
// RUN: not qopt-opt %s --qopt-quantize-weights="format=nf4 block=-1" 2>&1 | FileCheck %s --check-prefix=ERR-BLOCK
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int4 block=32" 2>&1 | FileCheck %s --check-prefix=ERR-INTBLOCK
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int4 clip=best" 2>&1 | FileCheck %s --check-prefix=ERR-CLIP
// RUN: not qopt-opt %s --qopt-quantize-weights="format=nf4 clip=mse" 2>&1 | FileCheck %s --check-prefix=ERR-CLIPNF4
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int4 target-modules=o_proj" 2>&1 | FileCheck %s --check-prefix=ERR-NONE
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int4 target-modules=v_proj" 2>&1 | FileCheck %s --check-prefix=ERR-RUNTIME

// ERR-INT9: error: qopt-quantize-weights: format 'int9' is not supported (int2 to int8: 2 to 8 bits)
// ERR-FMT: error: qopt-quantize-weights: unknown format 'fp8' (nf4, fp4, int2 to int8, fp8-e4m3, fp8-e5m2, mxfp4, nvfp4)
// ERR-GROUP: error: qopt-quantize-weights: 'group' and 'asym' are for integer formats; nf4 has one absmax per 'block'
// ERR-DQ: error: qopt-quantize-weights: 'double-quant' is for nf4 and fp4 (QLoRA's double quantization of the block absmax)
// ERR-BLOCK: error: qopt-quantize-weights: 'block' and 'group' must not be negative
// ERR-INTBLOCK: error: qopt-quantize-weights: 'block' is for nf4 and fp4; integer formats take 'group'
// ERR-CLIP: error: qopt-quantize-weights: clip 'best' is not minmax or mse
// ERR-CLIPNF4: error: qopt-quantize-weights: clip=mse is for integer formats (nf4 scales by the block absmax, as bitsandbytes does)
// ERR-NONE: error: qopt-quantize-weights: no linear layer with a weight known at compile time matches the selection
// ERR-RUNTIME: error: qopt-quantize-weights: the weight of 'model.v_proj' is not a parameter with data or a constant: only weights known at compile time are quantized
// ERR-MX: error: qopt-quantize-weights: mxfp4 takes no options: its blocks of 32 and their scales are fixed by the format
// ERR-NV: error: qopt-quantize-weights: nvfp4 takes no options: its blocks of 16 and their scales are fixed by the format
// ERR-BUDGET-FMT: error: qopt-quantize-weights: 'budget-bits' chooses integer widths: give an integer format (int4:group=128,asym …), not nf4
// ERR-BUDGET-NEG: error: qopt-quantize-weights: 'budget-bits' must be a positive number of bits per weight
// ERR-BUDGET-LOW: error: qopt-quantize-weights: a budget of 3.00 bits per weight is below the narrowest choice (6.000 bits per weight with 2-bit codes and their scales)
// ERR-PERCHANNEL: error: qopt-quantize-weights: 'per-channel' and 'group' exclude each other
// (Trainable and non-finite weights: qopt-quantize-weights-errors.mlir.)

// int4 in groups of 4 with zero points: q_proj read through the transpose
// (4x8, stored 4x4 bytes), k_proj; the floats dropped; v_proj (given at run
// time), the output head and the embedding untouched.
// INT4-NOT: qopt.param @wq
// INT4-NOT: qopt.param @wk
// INT4-DAG: qopt.param @model.q_proj.weight.scales : tensor<4x2xf32>
// INT4-DAG: qopt.param @model.q_proj.weight.zero_points : tensor<4x2xi8>
// INT4-DAG: qopt.param @model.q_proj.weight : tensor<4x4xi8>
// INT4-DAG: qopt.param @model.k_proj.weight : tensor<2x4xi8>
// INT4-DAG: qopt.param @head : tensor<10x4xf32>
// INT4-DAG: qopt.param @emb : tensor<10x4xf32>
// INT4: qopt.assemble %{{.*}}, %{{.*}} zero_points %{{.*}} : (tensor<4x4xi8>, tensor<4x2xf32>, tensor<4x2xi8>) -> !qopt.qtensor<4x8, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 4>, scales = f32>
// INT4: qopt.linear %arg0, %{{.*}} module "model.k_proj" : (tensor<3x8xf32>, !qopt.qtensor<2x8, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 4>, scales = f32>)
// INT4: qopt.linear %arg0, %arg1 module "model.v_proj" : (tensor<3x8xf32>, tensor<4x8xf32>)
// INT4: qopt.linear %{{.*}}, %{{.*}} module "lm_head" : (tensor<3x4xf32>, tensor<10x4xf32>)

// NF4 in blocks of 16 with QLoRA's double quantization: the absmax as
// dynamic codes with their nested absmax and offset.
// NF4-DAG: qopt.param @model.q_proj.weight.absmax : tensor<2xi8>
// NF4-DAG: qopt.param @model.q_proj.weight.nested_absmax : tensor<1xf32>
// NF4: %[[S:.*]] = qopt.assemble %{{.*}}, %{{.*}} offset %{{.*}} : (tensor<2xi8>, tensor<1xf32>, tensor<f32>) -> !qopt.qtensor<2, #qopt.dynamic8, #qopt.per_block<256>, scales = f32, offset>
// NF4: qopt.assemble %{{.*}}, %[[S]] : (tensor<4x4xi8>, !qopt.qtensor<2, #qopt.dynamic8, #qopt.per_block<256>, scales = f32, offset>) -> !qopt.qtensor<4x8, #qopt.nf4, #qopt.per_block<16>, scales = !qopt.qtensor<2, #qopt.dynamic8, #qopt.per_block<256>, scales = f32, offset>>

// int8 per channel on the layer target-modules names only.
// INT8: qopt.param @wq : tensor<8x4xf32>
// INT8: qopt.param @model.k_proj.weight.scales : tensor<2xf32>
// INT8: qopt.param @model.k_proj.weight : tensor<2x8xi8>
// INT8: qopt.linear %arg0, %{{.*}} module "model.q_proj" : (tensor<3x8xf32>, tensor<4x8xf32>)
// INT8: qopt.assemble %{{.*}}, %{{.*}} : (tensor<2x8xi8>, tensor<2xf32>) -> !qopt.qtensor<2x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>

// FP8 E4M3 with one f32 scale for the tensor.
// FP8-DAG: qopt.param @model.q_proj.weight.scales : tensor<f32>
// FP8-DAG: qopt.param @model.q_proj.weight : tensor<4x8xi8>
// FP8: qopt.assemble %{{.*}}, %{{.*}} : (tensor<4x8xi8>, tensor<f32>) -> !qopt.qtensor<4x8, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>

// A budget of 7 bits per weight over q_proj (4x8) and k_proj (2x8), one
// f32 scale a row (4 bits per weight over 8 columns): 2-bit codes cost 6
// bits per weight, 3-bit 7, 4-bit 8: both layers get 3 bits.
// BUDGET: qopt-quantize-weights: integer widths for a budget of 7.00 bits per weight (intK):
// BUDGET-NEXT: module shape bits bits/weight relative error
// BUDGET-NEXT: model.q_proj 4x8 3 7.000 {{[0-9.]+}}e-01
// BUDGET-NEXT: model.k_proj 2x8 3 7.000 {{[0-9.]+}}e-01
// BUDGET-NEXT: total: 7.000 bits per weight (budget 7.00)
// BUDGET: qopt.assemble %{{.*}}, %{{.*}} : (tensor<4x3xi8>, tensor<4xf32>) -> !qopt.qtensor<4x8, #qopt.int<3>, #qopt.per_channel<0>, scales = f32>

// int3 in groups of 4: 8 codes of 3 bits take 3 bytes a row.
// INT3-DAG: qopt.param @model.q_proj.weight.scales : tensor<4x2xf32>
// INT3-DAG: qopt.param @model.q_proj.weight : tensor<4x3xi8>
// INT3: qopt.assemble %{{.*}}, %{{.*}} : (tensor<4x3xi8>, tensor<4x2xf32>) -> !qopt.qtensor<4x8, #qopt.int<3>, #qopt.per_group<axis = 1, size = 4>, scales = f32>

// OCP microscaling FP4: E2M1 codes, one E8M0 scale per 32 (bytes, read as
// f8E8M0FNU).
// MXFP4-DAG: qopt.param @model.q_proj.weight.scales : tensor<4x1xi8>
// MXFP4-DAG: qopt.param @model.q_proj.weight : tensor<4x4xi8>
// MXFP4: %[[S:.*]] = arith.bitcast %{{.*}} : tensor<4x1xi8> to tensor<4x1xf8E8M0FNU>
// MXFP4: qopt.assemble %{{.*}}, %[[S]] : (tensor<4x4xi8>, tensor<4x1xf8E8M0FNU>) -> !qopt.qtensor<4x8, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 32>, scales = f8E8M0FNU>

// The NVFP4 layout: E2M1 codes, E4M3 scales per 16 over one f32 global scale.
// NVFP4-DAG: qopt.param @model.q_proj.weight.scales : tensor<4x1xi8>
// NVFP4-DAG: qopt.param @model.q_proj.weight.global_scale : tensor<f32>
// NVFP4: %[[S:.*]] = qopt.assemble %{{.*}}, %{{.*}} : (tensor<4x1xi8>, tensor<f32>) -> !qopt.qtensor<4x1, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>
// NVFP4: qopt.assemble %{{.*}}, %[[S]] : (tensor<4x4xi8>, !qopt.qtensor<4x1, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>) -> !qopt.qtensor<4x8, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 16>, scales = !qopt.qtensor<4x1, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>>

// The weights: q_proj 4x8 and k_proj 2x8 as parameters (q_proj's stored
// K x N behind a transpose, as raising leaves MatMul weights), v_proj given
// at run time, lm_head the output head.
qopt.param @wq : tensor<8x4xf32> = dense<[[0.5, -1.0, 2.0, 0.0], [1.5, 0.25, -0.75, 3.0], [-2.0, 1.0, 0.5, 0.125], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, -3.0, -4.0], [0.3, 0.6, 0.9, 1.2], [7.0, -7.0, 0.5, -0.5]]> : tensor<8x4xf32>
qopt.param @wk : tensor<2x8xf32> = dense<[[1.0, -0.5, 0.25, 2.0, -3.0, 0.0, 0.75, 1.25], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]> : tensor<2x8xf32>
qopt.param @head : tensor<10x4xf32> = dense<1.0> : tensor<10x4xf32>
qopt.param @emb : tensor<10x4xf32> = dense<1.0> : tensor<10x4xf32>
func.func @m(%x: tensor<3x8xf32>, %wv: tensor<4x8xf32>) -> (tensor<3x10xf32>, tensor<3x2xf32>, tensor<3x4xf32>) {
  %kn = qopt.load_param @wq : tensor<8x4xf32>
  %init = tensor.empty() : tensor<4x8xf32>
  %wq = linalg.transpose ins(%kn : tensor<8x4xf32>) outs(%init : tensor<4x8xf32>) permutation = [1, 0]
  %q = qopt.linear %x, %wq module "model.q_proj" : (tensor<3x8xf32>, tensor<4x8xf32>) -> tensor<3x4xf32>
  %wk = qopt.load_param @wk : tensor<2x8xf32>
  %k = qopt.linear %x, %wk module "model.k_proj" : (tensor<3x8xf32>, tensor<2x8xf32>) -> tensor<3x2xf32>
  %v = qopt.linear %x, %wv module "model.v_proj" : (tensor<3x8xf32>, tensor<4x8xf32>) -> tensor<3x4xf32>
  %wh = qopt.load_param @head : tensor<10x4xf32>
  %h = qopt.linear %q, %wh module "lm_head" : (tensor<3x4xf32>, tensor<10x4xf32>) -> tensor<3x10xf32>
  %e = qopt.load_param @emb : tensor<10x4xf32>
  %ids = arith.constant dense<[0, 1, 2]> : tensor<3xi64>
  %t = qopt.embedding %ids, %e : (tensor<3xi64>, tensor<10x4xf32>) -> tensor<3x4xf32>
  return %h, %k, %t : tensor<3x10xf32>, tensor<3x2xf32>, tensor<3x4xf32>
}
