// RUN: qopt-opt %s --qopt-merge-lora="requantize=true" --mlir-elide-resource-strings-if-larger=1 2>%t.report | FileCheck %s
// RUN: FileCheck %s --check-prefix=REPORT < %t.report
// RUN: qopt-opt %s --qopt-merge-lora="requantize=true" --qopt-quantize-weights="format=int4 target-modules=k_proj" --convert-qopt-to-linalg > /dev/null

// Merging into a quantized weight with requantize=true: the weight (int8
// per channel, as qopt-quantize-weights stores it) is dequantized at compile
// time, B·A added, and the sum quantized again in the same layout into new
// parameters; the old ones and the factors go. The report on stderr has one
// row per merged layer.

// CHECK-NOT: qopt.param @lora_a
// CHECK-NOT: qopt.param @lora_b
// CHECK-DAG: qopt.param @model.q_proj.weight.scales : tensor<4xf32>
// CHECK-DAG: qopt.param @model.q_proj.weight : tensor<4x8xi8>
// CHECK: %[[Q:.*]] = qopt.assemble %{{.*}}, %{{.*}} : (tensor<4x8xi8>, tensor<4xf32>) -> !qopt.qtensor<4x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
// CHECK: qopt.linear %arg0, %[[Q]] module "model.q_proj"
// CHECK-NOT: qopt.lora

// REPORT: qopt-merge-lora: adapters merged into quantized weights, quantized again (relative Frobenius norms):
// REPORT-NEXT: module format update error update kept
// REPORT-NEXT: model.q_proj int8 {{[0-9.]+}}e{{[-+][0-9]+}} {{[0-9.]+}}e{{[-+][0-9]+}} {{[0-9.]+}}%

qopt.param @model.q_proj.weight : tensor<4x8xi8> = dense<[[1, -2, 3, 4, 5, 6, 7, 127], [0, 0, 0, 0, 0, 0, 0, 1], [-128, 1, 2, 3, 4, 5, 6, 7], [10, 20, 30, 40, 50, 60, 70, 80]]> : tensor<4x8xi8>
qopt.param @model.q_proj.weight.scales : tensor<4xf32> = dense<[0.01, 0.5, 0.25, 0.125]> : tensor<4xf32>
qopt.param @lora_a : tensor<2x8xf32> = dense<0.5> : tensor<2x8xf32>
qopt.param @lora_b : tensor<4x2xf32> = dense<[[0.1, 0.2], [0.3, 0.4], [-0.5, 0.6], [0.7, -0.8]]> : tensor<4x2xf32>
qopt.param @wk : tensor<2x8xf32> = dense<1.0> : tensor<2x8xf32>
func.func @m(%x: tensor<3x8xf32>) -> (tensor<3x4xf32>, tensor<3x2xf32>) {
  %d = qopt.load_param @model.q_proj.weight : tensor<4x8xi8>
  %s = qopt.load_param @model.q_proj.weight.scales : tensor<4xf32>
  %q = qopt.assemble %d, %s : (tensor<4x8xi8>, tensor<4xf32>) -> !qopt.qtensor<4x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
  %a = qopt.load_param @lora_a : tensor<2x8xf32>
  %b = qopt.load_param @lora_b : tensor<4x2xf32>
  %y = qopt.lora %x, %q, %a, %b alpha = 4.0 module "model.q_proj" : (tensor<3x8xf32>, !qopt.qtensor<4x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>, tensor<2x8xf32>, tensor<4x2xf32>) -> tensor<3x4xf32>
  %wk = qopt.load_param @wk : tensor<2x8xf32>
  %k = qopt.linear %x, %wk module "model.k_proj" : (tensor<3x8xf32>, tensor<2x8xf32>) -> tensor<3x2xf32>
  return %y, %k : tensor<3x4xf32>, tensor<3x2xf32>
}
