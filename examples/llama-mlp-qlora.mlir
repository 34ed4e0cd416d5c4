// The up and down projections of a small LLaMA-style MLP (hidden 64,
// intermediate 128; the SiLU gate is left out) after QLoRA preparation:
// frozen NF4 base weights with double-quantized scales, read from a
// safetensors file beside this one, LoRA adapters on the projections.
// The down projection's adapter was pruned to zero (a frozen, zero B).
//
//   build/bin/qopt-opt examples/llama-mlp-qlora.mlir \
//     --pass-pipeline="builtin.module(qopt-fold-zero-lora,canonicalize,cse)"
//
// rewrites the pruned adapter into a plain qopt.linear and removes the
// parameter reads it no longer needs; the live adapters (whose trainable B
// also starts at zero) are kept.

qopt.param @model.layers.0.post_attention_layernorm.weight : tensor<64xf32>
    = #qopt.external<"model.safetensors", offset = 0, length = 256>

// up_proj: 128x64 NF4 in blocks of 64 -> 128 absmax values, quantized to
// int8 in blocks of 256 (one block) after subtracting their mean.
qopt.param @model.layers.0.mlp.up_proj.qweight : tensor<128x32xi8>
    = #qopt.external<"model.safetensors", offset = 256, length = 4096>
qopt.param @model.layers.0.mlp.up_proj.absmax.q : tensor<128xi8>
    = #qopt.external<"model.safetensors", offset = 4352, length = 128>
qopt.param @model.layers.0.mlp.up_proj.absmax.scale : tensor<1xf32>
    = #qopt.external<"model.safetensors", offset = 4480, length = 4>
qopt.param @model.layers.0.mlp.up_proj.absmax.offset : tensor<f32>
    = #qopt.external<"model.safetensors", offset = 4484, length = 4>
qopt.param @model.layers.0.mlp.down_proj.weight : tensor<64x128xf32>
    = #qopt.external<"model.safetensors", offset = 4488, length = 32768>

qopt.param trainable @model.layers.0.mlp.up_proj.lora_A : tensor<8x64xf32>
qopt.param trainable @model.layers.0.mlp.up_proj.lora_B : tensor<128x8xf32>
    = dense<0.0> : tensor<128x8xf32>
qopt.param @model.layers.0.mlp.down_proj.lora_A : tensor<8x128xf32>
qopt.param @model.layers.0.mlp.down_proj.lora_B : tensor<64x8xf32>
    = dense<0.0> : tensor<64x8xf32>

func.func @mlp(%x: tensor<?x?x64xf32>) -> tensor<?x?x64xf32> {
  %gamma = qopt.load_param @model.layers.0.post_attention_layernorm.weight : tensor<64xf32>
  %h = qopt.rms_norm %x, %gamma epsilon = 1.0e-05
      : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>

  %codes = qopt.load_param @model.layers.0.mlp.up_proj.qweight : tensor<128x32xi8>
  %sq = qopt.load_param @model.layers.0.mlp.up_proj.absmax.q : tensor<128xi8>
  %ss = qopt.load_param @model.layers.0.mlp.up_proj.absmax.scale : tensor<1xf32>
  %so = qopt.load_param @model.layers.0.mlp.up_proj.absmax.offset : tensor<f32>
  %absmax = qopt.assemble %sq, %ss offset %so : (tensor<128xi8>, tensor<1xf32>, tensor<f32>)
      -> !qopt.qtensor<128, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>
  %w_up = qopt.assemble %codes, %absmax
      : (tensor<128x32xi8>, !qopt.qtensor<128, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>)
      -> !qopt.qtensor<128x64, #qopt.nf4, #qopt.per_block<64>,
                       scales = !qopt.qtensor<128, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>>
  %a_up = qopt.load_param @model.layers.0.mlp.up_proj.lora_A : tensor<8x64xf32>
  %b_up = qopt.load_param @model.layers.0.mlp.up_proj.lora_B : tensor<128x8xf32>
  %up = qopt.lora %h, %w_up, %a_up, %b_up alpha = 16.0 dropout = 5.0e-02
      : (tensor<?x?x64xf32>,
         !qopt.qtensor<128x64, #qopt.nf4, #qopt.per_block<64>,
                       scales = !qopt.qtensor<128, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>>,
         tensor<8x64xf32>, tensor<128x8xf32>) -> tensor<?x?x128xf32>

  %w_down = qopt.load_param @model.layers.0.mlp.down_proj.weight : tensor<64x128xf32>
  %a_down = qopt.load_param @model.layers.0.mlp.down_proj.lora_A : tensor<8x128xf32>
  %b_down = qopt.load_param @model.layers.0.mlp.down_proj.lora_B : tensor<64x8xf32>
  %down = qopt.lora %up, %w_down, %a_down, %b_down alpha = 16.0
      : (tensor<?x?x128xf32>, tensor<64x128xf32>, tensor<8x128xf32>, tensor<64x8xf32>)
      -> tensor<?x?x64xf32>
  return %down : tensor<?x?x64xf32>
}
