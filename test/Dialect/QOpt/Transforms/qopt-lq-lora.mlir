// RUN: qopt-opt %s --qopt-lq-lora="weights=int4:group=4,asym rank=2 iterations=3" --mlir-elide-resource-strings-if-larger=1 2>%t.report | FileCheck %s
// RUN: FileCheck %s --check-prefix=REPORT < %t.report
// RUN: qopt-opt %s --qopt-lq-lora="weights=int4:group=4 budget-bits=40 ranks=0,1" --mlir-elide-resource-strings-if-larger=1 2>&1 | FileCheck %s --check-prefix=BUDGET
// RUN: qopt-opt %s --qopt-lq-lora="weights=int4:group=4 rank=1 target-modules=bf_proj" --mlir-elide-resource-strings-if-larger=1 2>/dev/null | FileCheck %s --check-prefix=BF16
// RUN: not qopt-opt %s --qopt-lq-lora="weights=int9" 2>&1 | FileCheck %s --check-prefix=ERR-SPEC
// RUN: not qopt-opt %s --qopt-lq-lora="iterations=0" 2>&1 | FileCheck %s --check-prefix=ERR-ITER
// RUN: not qopt-opt %s --qopt-lq-lora="svd=lanczos" 2>&1 | FileCheck %s --check-prefix=ERR-SVD
// RUN: qopt-opt %s --qopt-lq-lora="weights=int4:group=4,asym rank=2 iterations=3 svd=randomized" --mlir-elide-resource-strings-if-larger=1 2>/dev/null | FileCheck %s
// RUN: not qopt-opt %s --qopt-lq-lora="ranks=2,4" 2>&1 | FileCheck %s --check-prefix=ERR-RANKS
// RUN: not qopt-opt %s --qopt-lq-lora="rank=0" 2>&1 | FileCheck %s --check-prefix=ERR-RANK0
// RUN: not qopt-opt %s --qopt-lq-lora="rank=5" 2>&1 | FileCheck %s --check-prefix=ERR-RANKBIG
// RUN: not qopt-opt %s --qopt-lq-lora="weights=nf4 budget-bits=4" 2>&1 | FileCheck %s --check-prefix=ERR-BUDGETFMT
// RUN: not qopt-opt %s --qopt-lq-lora="weights=int4:group=4 budget-bits=1 ranks=0,1" 2>&1 | FileCheck %s --check-prefix=ERR-BUDGET
// RUN: not qopt-opt %s --qopt-lq-lora="target-modules=v_proj" 2>&1 | FileCheck %s --check-prefix=ERR-RUNTIME
// RUN: not qopt-opt %s --qopt-lq-lora="rank=2 fisher=%t.missing" 2>&1 | FileCheck %s --check-prefix=ERR-FISHER

// A bf16 layer gets bf16 factors (the compute type).
// BF16-DAG: qopt.param trainable @model.bf_proj.lora_A.weight : tensor<1x8xbf16>
// BF16-DAG: qopt.param trainable @model.bf_proj.lora_B.weight : tensor<2x1xbf16>
// BF16-DAG: qopt.lora %{{.*}} module "model.bf_proj" : (tensor<3x8xbf16>,

// ERR-SPEC: error: qopt-lq-lora: weights 'int9': format 'int9' is not supported (int2 to int8: 2 to 8 bits)
// ERR-ITER: error: qopt-lq-lora: iterations must be at least 1, got 0
// ERR-SVD: error: qopt-lq-lora: svd 'lanczos' is not exact, randomized or auto
// ERR-RANKS: error: qopt-lq-lora: 'ranks' lists the ranks budget-bits chooses from; without a budget give 'rank'
// ERR-RANK0: error: qopt-lq-lora: rank 0 is not at least 1
// ERR-RANKBIG: error: qopt-lq-lora: rank 5 exceeds the smaller side of 'model.bf_proj' (2x8)
// ERR-BUDGETFMT: error: qopt-lq-lora: budget-bits chooses integer widths: give an integer spec (int4:group=64,asym …), not nf4
// ERR-BUDGET: error: qopt-lq-lora: a budget of 1.00 bits per weight is below the cheapest choice (10.000 bits per weight)
// ERR-RUNTIME: error: qopt-lq-lora: the weight of 'model.v_proj' is not a parameter with data or a constant: only weights known at compile time are decomposed
// ERR-FISHER: error: qopt-lq-lora: fisher '{{.*}}.missing': {{.*}}o such file or directory

// Each layer: a qopt.lora on the packed Q, trainable factors, alpha = r;
// v_proj (given at run time) and the head stay.
// CHECK-DAG: qopt.param trainable @model.q_proj.lora_A.weight : tensor<2x8xf32>
// CHECK-DAG: qopt.param trainable @model.q_proj.lora_B.weight : tensor<4x2xf32>
// CHECK-DAG: qopt.param @model.q_proj.weight : tensor<4x4xi8>
// CHECK-DAG: qopt.param @model.q_proj.weight.zero_points : tensor<4x2xi8>
// CHECK-DAG: qopt.param @model.k_proj.weight : tensor<2x4xi8>
// CHECK-NOT: qopt.param @wq
// CHECK: %[[Q:.*]] = qopt.assemble
// CHECK-DAG: %[[A:.*]] = qopt.load_param @model.q_proj.lora_A.weight
// CHECK-DAG: %[[B:.*]] = qopt.load_param @model.q_proj.lora_B.weight
// CHECK: qopt.lora %arg0, %[[Q]], %[[A]], %[[B]] alpha = 2.000000e+00 module "model.q_proj" : (tensor<3x8xf32>, !qopt.qtensor<4x8, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 4>, scales = f32>, tensor<2x8xf32>, tensor<4x2xf32>) -> tensor<3x4xf32>
// CHECK: qopt.lora %arg0, {{.*}} module "model.k_proj"
// CHECK: qopt.linear %arg0, %arg1 module "model.v_proj"
// CHECK: qopt.linear {{.*}} module "lm_head"

// REPORT: qopt-lq-lora: W ≈ Q + B·A (int4:group=4,asym, rank 2):
// REPORT: model.q_proj 4x8 4 2 {{[1-3]}}
// REPORT: model.k_proj 2x8 4 2 {{[1-3]}}
// REPORT: total:

// Under a budget of 40 bits per weight (the factors cost 32·r·(N + K)):
// BUDGET: W ≈ Q + B·A (int4:group=4, widths and ranks under 40.00 bits per weight):
// BUDGET: total: {{[0-9.]+}} bits per weight (budget 40.00)

qopt.param @wq : tensor<4x8xf32> = dense<[[0.5, -1.0, 2.0, 0.0, 1.5, 0.25, -0.75, 3.0], [-2.0, 1.0, 0.5, 0.125, 0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -4.0], [0.3, 0.6, 0.9, 1.2, 7.0, -7.0, 0.5, -0.5]]> : tensor<4x8xf32>
qopt.param @wk : tensor<2x8xf32> = dense<[[1.0, -0.5, 0.25, 2.0, -3.0, 0.0, 0.75, 1.25], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]> : tensor<2x8xf32>
qopt.param @head : tensor<10x4xf32> = dense<1.0> : tensor<10x4xf32>
qopt.param @wbf : tensor<2x8xbf16> = dense<[[1.0, -0.5, 0.25, 2.0, -3.0, 0.0, 0.75, 1.25], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]> : tensor<2x8xbf16>
func.func @bf(%x: tensor<3x8xbf16>) -> tensor<3x2xbf16> {
  %w = qopt.load_param @wbf : tensor<2x8xbf16>
  %y = qopt.linear %x, %w module "model.bf_proj" : (tensor<3x8xbf16>, tensor<2x8xbf16>) -> tensor<3x2xbf16>
  return %y : tensor<3x2xbf16>
}
qopt.param @emb : tensor<10x4xf32> = dense<1.0> : tensor<10x4xf32>
func.func @m(%x: tensor<3x8xf32>, %wv: tensor<4x8xf32>) -> (tensor<3x10xf32>, tensor<3x2xf32>, tensor<3x4xf32>, tensor<3x4xf32>) {
  %wq = qopt.load_param @wq : tensor<4x8xf32>
  %q = qopt.linear %x, %wq module "model.q_proj" : (tensor<3x8xf32>, tensor<4x8xf32>) -> tensor<3x4xf32>
  %wk = qopt.load_param @wk : tensor<2x8xf32>
  %k = qopt.linear %x, %wk module "model.k_proj" : (tensor<3x8xf32>, tensor<2x8xf32>) -> tensor<3x2xf32>
  %v = qopt.linear %x, %wv module "model.v_proj" : (tensor<3x8xf32>, tensor<4x8xf32>) -> tensor<3x4xf32>
  %wh = qopt.load_param @head : tensor<10x4xf32>
  %h = qopt.linear %q, %wh module "lm_head" : (tensor<3x4xf32>, tensor<10x4xf32>) -> tensor<3x10xf32>
  %e = qopt.load_param @emb : tensor<10x4xf32>
  %ids = arith.constant dense<[0, 1, 2]> : tensor<3xi64>
  %t = qopt.embedding %ids, %e : (tensor<3xi64>, tensor<10x4xf32>) -> tensor<3x4xf32>
  return %h, %k, %t, %v : tensor<3x10xf32>, tensor<3x2xf32>, tensor<3x4xf32>, tensor<3x4xf32>
}
