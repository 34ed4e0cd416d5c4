// RUN: qopt-opt %s --qopt-list-modules -o /dev/null | FileCheck %s --strict-whitespace
// RUN: qopt-opt %s --qopt-list-modules="target-modules=up_proj,q_proj exclude-modules=model.layers.1.self_attn.q_proj" -o /dev/null | FileCheck %s --strict-whitespace --check-prefix=SEL
// RUN: not qopt-opt %s --qopt-list-modules="target-modules=a(b" -o /dev/null 2>&1 | FileCheck %s --check-prefix=BAD
// The IR is unchanged:
// RUN: qopt-opt %s --qopt-list-modules -o - | FileCheck %s --check-prefix=IR
// On an ONNX export, through qoptc: test/e2e/list-modules.test.

// CHECK: # module	op	shape (out x in)	weight	note
// CHECK-NEXT: <unnamed>	embedding	32x8	bf16	table: num_embeddings x dim{{$}}
// CHECK-NEXT: model.layers.0.self_attn.q_proj	linear	4x8	f32	{{$}}
// CHECK-NEXT: model.layers.0.mlp.up_proj	linear	16x8	quantized #qopt.int<4> #qopt.per_group<axis = 1, size = 4>	{{$}}
// CHECK-NEXT: model.layers.1.self_attn.q_proj	lora r=2	4x8	f32	{{$}}
// CHECK-NEXT: <unnamed>	linear	4x8	f32	{{$}}
// CHECK-NEXT: lm_head	linear	32x8	bf16	output head
// CHECK-NOT: {{.}}

// SEL: model.layers.0.self_attn.q_proj{{.*}}	targeted
// SEL-NEXT: model.layers.0.mlp.up_proj{{.*}}	targeted
// SEL-NEXT: model.layers.1.self_attn.q_proj{{.*}}	{{$}}
// SEL-NEXT: <unnamed>{{.*}}	{{$}}
// SEL-NEXT: lm_head{{.*}}	output head{{$}}

// BAD: error: qopt-list-modules: regular expression 'a(b': parentheses not balanced

// IR: qopt.linear %{{.*}} module "model.layers.0.self_attn.q_proj"

!q = !qopt.qtensor<16x8, #qopt.int<4>, #qopt.per_group<axis = 1, size = 4>, scales = f32>
func.func @model(%x: tensor<?x8xf32>, %xb: tensor<?x8xbf16>, %ids: tensor<?xi64>, %w: tensor<4x8xf32>, %q: !q, %a: tensor<2x8xf32>, %b: tensor<4x2xf32>, %e: tensor<32x8xbf16>) -> (tensor<?x4xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x8xbf16>, tensor<?x32xbf16>) {
  %0 = qopt.linear %x, %w module "model.layers.0.self_attn.q_proj" : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  %1 = qopt.linear %x, %q module "model.layers.0.mlp.up_proj" : (tensor<?x8xf32>, !q) -> tensor<?x16xf32>
  %2 = qopt.lora %x, %w, %a, %b alpha = 4.0 module "model.layers.1.self_attn.q_proj" : (tensor<?x8xf32>, tensor<4x8xf32>, tensor<2x8xf32>, tensor<4x2xf32>) -> tensor<?x4xf32>
  %3 = qopt.linear %x, %w : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  %h = qopt.embedding %ids, %e : (tensor<?xi64>, tensor<32x8xbf16>) -> tensor<?x8xbf16>
  %4 = qopt.linear %h, %e module "lm_head" : (tensor<?x8xbf16>, tensor<32x8xbf16>) -> tensor<?x32xbf16>
  return %0, %1, %2, %3, %h, %4 : tensor<?x4xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x8xbf16>, tensor<?x32xbf16>
}
