// RUN: qopt-opt %s -split-input-file -verify-diagnostics
// Every error of the QOpt attributes and types.

// expected-error@+1 {{integer format has 9 bits; supported widths are 2 to 8}}
func.func private @f(!qopt.qtensor<4, #qopt.int<9>, #qopt.per_tensor, scales = f32>)

// -----

// expected-error@+1 {{integer format has 1 bits; supported widths are 2 to 8}}
func.func private @f(!qopt.qtensor<4, #qopt.int<1>, #qopt.per_tensor, scales = f32>)

// -----

// expected-error@+1 {{expected 'signed', 'unsigned' or 'zero_point', got 'asymmetric'}}
func.func private @f(!qopt.qtensor<4, #qopt.int<4, asymmetric>, #qopt.per_tensor, scales = f32>)

// -----

// expected-error@+1 {{float format must be f8E4M3FN, f8E5M2 or f4E2M1FN, got 'f16'}}
func.func private @f(!qopt.qtensor<4, #qopt.float<f16>, #qopt.per_tensor, scales = f32>)

// -----

// expected-error@+1 {{per_channel axis must be non-negative, got -1}}
func.func private @f(!qopt.qtensor<4, #qopt.int<8>, #qopt.per_channel<-1>, scales = f32>)

// -----

// expected-error@+1 {{per_group axis must be non-negative, got -1}}
func.func private @f(!qopt.qtensor<4, #qopt.int<8>, #qopt.per_group<axis = -1, size = 2>, scales = f32>)

// -----

// expected-error@+1 {{per_group size must be positive, got 0}}
func.func private @f(!qopt.qtensor<4, #qopt.int<8>, #qopt.per_group<axis = 0, size = 0>, scales = f32>)

// -----

// expected-error@+1 {{per_block size must be positive, got 0}}
func.func private @f(!qopt.qtensor<4, #qopt.nf4, #qopt.per_block<0>, scales = f32>)

// -----

// expected-error@+1 {{per_channel axis 2 is out of range for rank 2}}
func.func private @f(!qopt.qtensor<4x4, #qopt.int<8>, #qopt.per_channel<2>, scales = f32>)

// -----

// expected-error@+1 {{per_group axis 1 is out of range for rank 1}}
func.func private @f(!qopt.qtensor<4, #qopt.int<8>, #qopt.per_group<axis = 1, size = 2>, scales = f32>)

// -----

// expected-error@+1 {{quantized tensor must have rank 1 or more}}
func.func private @f(!qopt.qtensor<, #qopt.int<8>, #qopt.per_tensor, scales = f32>)

// -----

// expected-error@+1 {{expected a quantization format (#qopt.int, #qopt.nf4, #qopt.bnb_fp4, #qopt.dynamic8, #qopt.float), got #qopt.per_tensor}}
func.func private @f(!qopt.qtensor<4, #qopt.per_tensor, #qopt.per_tensor, scales = f32>)

// -----

// expected-error@+1 {{expected a granularity (#qopt.per_tensor, #qopt.per_channel, #qopt.per_group, #qopt.per_block, #qopt.per_token), got #qopt.nf4}}
func.func private @f(!qopt.qtensor<4, #qopt.nf4, #qopt.nf4, scales = f32>)

// -----

// expected-error@+1 {{scales must be f32, f16, bf16, f8E8M0FNU, f8E4M3FN or a !qopt.qtensor (double quantization), got 'i8'}}
func.func private @f(!qopt.qtensor<4, #qopt.int<8>, #qopt.per_tensor, scales = i8>)

// -----

// expected-error@+1 {{f8E8M0FNU (power-of-two) scales are only supported with #qopt.float formats (MX)}}
func.func private @f(!qopt.qtensor<64, #qopt.int<4>, #qopt.per_block<32>, scales = f8E8M0FNU>)

// -----

// expected-error@+1 {{double-quantized scales have shape [16] but #qopt.per_block<64> needs [32]}}
func.func private @f(!qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<16, #qopt.int<8>, #qopt.per_block<256>, scales = f32>>)

// -----

// expected-error@+1 {{double quantization of scales is not supported together with zero points}}
func.func private @f(!qopt.qtensor<64, #qopt.int<4, zero_point>, #qopt.per_block<32>, scales = !qopt.qtensor<2, #qopt.int<8>, #qopt.per_tensor, scales = f32>>)

// -----

// expected-error@+1 {{external data needs a file name}}
qopt.param @w : tensor<4xf32> = #qopt.external<"", offset = 0, length = 16>

// -----

// expected-error@+1 {{external data location '/etc/passwd' is absolute; it must be relative to the model's folder}}
qopt.param @w : tensor<4xf32> = #qopt.external<"/etc/passwd", offset = 0, length = 16>

// -----

// expected-error@+1 {{external data location 'weights/../../secret.bin' leaves the model's folder through '..'}}
qopt.param @w : tensor<4xf32> = #qopt.external<"weights/../../secret.bin", offset = 0, length = 16>

// -----

// expected-error@+1 {{external data range overflows: offset 18446744073709551615 + length 16}}
qopt.param @w : tensor<4xf32> = #qopt.external<"w.bin", offset = 18446744073709551615, length = 16>
