// qopt.lora_embedding with sizes only known at run time: the lowering checks
// that A has a column per table row and B a row per table column before the
// gather reads them.
// RUN: qopt-opt %s --convert-qopt-to-linalg | FileCheck %s
// CHECK: cf.assert %{{.*}}, "qopt.lora_embedding{{.*}}: the table's rows differ from lora_a's columns
// CHECK: cf.assert %{{.*}}, "qopt.lora_embedding{{.*}}: the table's columns differ from lora_b's rows
// CHECK: "qopt.embedding{{.*}}: an id is out of range"
// CHECK-NOT: qopt.lora_embedding
func.func @m(%ids: tensor<?xi64>, %w: tensor<?x?xf32>, %a: tensor<2x?xf32>, %b: tensor<?x2xf32>) -> tensor<?x?xf32> {
  %0 = qopt.lora_embedding %ids, %w, %a, %b alpha = 4.0 : (tensor<?xi64>, tensor<?x?xf32>, tensor<2x?xf32>, tensor<?x2xf32>) -> tensor<?x?xf32>
  return %0 : tensor<?x?xf32>
}
