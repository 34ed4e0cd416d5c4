// RUN: qopt-opt %s --qopt-insert-lsq="weights=int4 l4q=true exclude-modules=o_proj" | FileCheck %s
// RUN: qopt-opt %s --qopt-insert-lsq="weights=int4 l4q=true exclude-modules=o_proj" --qopt-convert-qat --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=CONVERT
// RUN: not qopt-opt %s --qopt-insert-lsq="weights=int4 l4q=true target-modules=v_proj" 2>&1 | FileCheck %s --check-prefix=ERR-NOBRANCH
// RUN: not qopt-opt %s --qopt-insert-lsq="weights=int4 l4q=true target-modules=o_proj" 2>&1 | FileCheck %s --check-prefix=ERR-DORA
// RUN: not qopt-opt %s --qopt-insert-lsq="weights=int4 l4q=true peqa=true" 2>&1 | FileCheck %s --check-prefix=ERR-PEQA
// RUN: not qopt-opt %s --qopt-insert-lsq="weights=int4 l4q=true exclude-modules=q_proj,o_proj" 2>&1 | FileCheck %s --check-prefix=ERR-NONE
// RUN: not qopt-opt %s --qopt-insert-lsq="weights=int4 l4q=true target-modules=k_proj" 2>&1 | FileCheck %s --check-prefix=ERR-TRAINABLE

// ERR-NOBRANCH: error: qopt-insert-lsq: l4q: 'model.v_proj' has no LoRA branch (give --adapter or --lora-config)
// ERR-DORA: error: qopt-insert-lsq: l4q: the branch of 'model.o_proj' is DoRA; L4Q quantizes W + scale·B·A
// ERR-PEQA: error: qopt-insert-lsq: 'peqa' and 'l4q' exclude each other
// ERR-TRAINABLE: error: qopt-insert-lsq: l4q: the weight of 'model.k_proj' is trainable or state: L4Q quantizes a frozen weight of static shape plus its adapter
// ERR-NONE: error: qopt-insert-lsq: l4q: no layer with a LoRA branch and a weight known at compile time matches the selection

// L4Q: the LoRA layer becomes a linear layer on lsq(W + scale·B·A)
// (scale = 8 / 2), the steps initialised from the merged weight, the
// factors trainable (B was loaded frozen); v_proj
// (no branch) and k_proj (a trainable W) are left alone under the default
// selection, and k_proj's frozen factors stay frozen.
// CHECK-DAG: qopt.param @model.k_proj.lora_A.weight
// CHECK-DAG: qopt.param trainable @model.q_proj.weight_step : tensor<4xf32>
// CHECK-DAG: qopt.param trainable @model.q_proj.lora_A.weight : tensor<2x8xf32>
// CHECK-DAG: qopt.param trainable @model.q_proj.lora_B.weight : tensor<4x2xf32>
// CHECK: qopt.lora %arg0, %{{.*}} module "model.k_proj"
// CHECK: %[[A:.*]] = qopt.load_param @model.q_proj.lora_A.weight
// CHECK: %[[B:.*]] = qopt.load_param @model.q_proj.lora_B.weight
// CHECK: %[[W:.*]] = qopt.load_param @wq
// CHECK: %[[BA:.*]] = linalg.matmul ins(%[[B]], %[[A]] : tensor<4x2xf32>, tensor<2x8xf32>)
// CHECK: %[[S:.*]] = arith.constant dense<4.000000e+00> : tensor<4x8xf32>
// CHECK: %[[SBA:.*]] = linalg.mul ins(%[[BA]], %[[S]] :
// CHECK: %[[M:.*]] = linalg.add ins(%[[W]], %[[SBA]] :
// CHECK: %[[Q:.*]] = qopt.lsq %[[M]] scale %{{.*}} format(#qopt.int<4>) granularity(#qopt.per_channel<0>) {{.*}}{qopt.qat_spec = "int4"}
// CHECK: qopt.linear %arg0, %[[Q]], %{{.*}} module "model.q_proj"
// CHECK-NOT: qopt.lora %arg0, %[[W]]
// CHECK: qopt.linear %arg0, %arg1 module "model.v_proj"

// Convert: one packed matrix; the factors and the steps are gone.
// CONVERT-NOT: q_proj.lora_A
// CONVERT-NOT: q_proj.lora_B
// CONVERT-NOT: weight_step
// CONVERT-NOT: linalg.matmul
// CONVERT-DAG: qopt.param @model.q_proj.weight.scales : tensor<4xf32>
// CONVERT-DAG: qopt.param @model.q_proj.weight : tensor<4x4xi8>

qopt.param @wq : tensor<4x8xf32> = dense<[[0.5, -1.0, 2.0, 0.0, 1.5, 0.25, -0.75, 3.0], [-2.0, 1.0, 0.5, 0.125, 0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -4.0], [0.3, 0.6, 0.9, 1.2, 7.0, -7.0, 0.5, -0.5]]> : tensor<4x8xf32>
qopt.param @bq : tensor<4xf32> = dense<[0.1, 0.2, 0.3, 0.4]> : tensor<4xf32>
qopt.param trainable @model.q_proj.lora_A.weight : tensor<2x8xf32> = dense<0.5> : tensor<2x8xf32>
qopt.param @model.q_proj.lora_B.weight : tensor<4x2xf32> = dense<[[0.1, 0.0], [0.0, -0.1], [0.05, 0.05], [0.0, 0.0]]> : tensor<4x2xf32>
qopt.param @wo : tensor<4x4xf32> = dense<1.0> : tensor<4x4xf32>
qopt.param trainable @wk : tensor<4x8xf32> = dense<1.0> : tensor<4x8xf32>
qopt.param @model.k_proj.lora_A.weight : tensor<2x8xf32> = dense<0.5> : tensor<2x8xf32>
qopt.param @model.k_proj.lora_B.weight : tensor<4x2xf32> = dense<0.0> : tensor<4x2xf32>
qopt.param trainable @model.o_proj.lora_A.weight : tensor<2x4xf32> = dense<0.5> : tensor<2x4xf32>
qopt.param trainable @model.o_proj.lora_B.weight : tensor<4x2xf32> = dense<0.0> : tensor<4x2xf32>
qopt.param trainable @model.o_proj.lora_magnitude_vector : tensor<4xf32> = dense<2.0> : tensor<4xf32>
func.func @m(%x: tensor<3x8xf32>, %wv: tensor<4x8xf32>) -> (tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) {
  %ak = qopt.load_param @model.k_proj.lora_A.weight : tensor<2x8xf32>
  %bk = qopt.load_param @model.k_proj.lora_B.weight : tensor<4x2xf32>
  %wk = qopt.load_param @wk : tensor<4x8xf32>
  %k = qopt.lora %x, %wk, %ak, %bk alpha = 2.0 module "model.k_proj" : (tensor<3x8xf32>, tensor<4x8xf32>, tensor<2x8xf32>, tensor<4x2xf32>) -> tensor<3x4xf32>
  %a = qopt.load_param @model.q_proj.lora_A.weight : tensor<2x8xf32>
  %b = qopt.load_param @model.q_proj.lora_B.weight : tensor<4x2xf32>
  %wq = qopt.load_param @wq : tensor<4x8xf32>
  %bq = qopt.load_param @bq : tensor<4xf32>
  %q = qopt.lora %x, %wq, %a, %b bias(%bq) alpha = 8.0 dropout = 5.0e-02 module "model.q_proj" : (tensor<3x8xf32>, tensor<4x8xf32>, tensor<2x8xf32>, tensor<4x2xf32>, tensor<4xf32>) -> tensor<3x4xf32>
  %v = qopt.linear %x, %wv module "model.v_proj" : (tensor<3x8xf32>, tensor<4x8xf32>) -> tensor<3x4xf32>
  %ao = qopt.load_param @model.o_proj.lora_A.weight : tensor<2x4xf32>
  %bo = qopt.load_param @model.o_proj.lora_B.weight : tensor<4x2xf32>
  %mo = qopt.load_param @model.o_proj.lora_magnitude_vector : tensor<4xf32>
  %wo = qopt.load_param @wo : tensor<4x4xf32>
  %o = qopt.lora %q, %wo, %ao, %bo magnitude(%mo) alpha = 2.0 module "model.o_proj" : (tensor<3x4xf32>, tensor<4x4xf32>, tensor<2x4xf32>, tensor<4x2xf32>, tensor<4xf32>) -> tensor<3x4xf32>
  return %o, %v, %k : tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>
}
