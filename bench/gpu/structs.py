"""The CUDA kernel library's by-value kernel parameters as struct formats.

Each kernel of lib/Runtime/Kernels/CUDA takes one struct by value; the GPU
scripts build its bytes with `pack(name, *fields)`, the fields in the C++
declaration's order (little-endian, the C layout's padding written out as
`x`). test/Runtime/gpu-bench-structs.test checks each format's size against
the struct's `static_assert(sizeof(...) == N)` in the headers, and that the
scripts pack no format of their own, so a changed struct cannot silently
shift the fields a GPU run passes.
"""
import struct

FORMATS = {
    "AttentionParams": "<5Q20q7q2fi4xq",                   # AttentionTile.h
    "AttentionBwdParams": "<5Q20q7q2fi4xq" "6Q20q2q",      # AttentionTile.h
    "GemmParams": "<34qfi2q3Ii",                           # GemmTile.h
    "NestedScales": "<QQqf256f4x",                         # QLinearTile.h
    "LoRAView": "<QqQqqf4xQq",                             # QLinearTile.h
    "HadamardParams": "<3Q5q4qfi",                         # HadamardTile.h
    "HadamardQuantParams": "<3Q5q4qfiQQii",                # HadamardTile.h
    "HadamardMixedParams": "<3Q5q4qfiQQii2q2i2016I",       # HadamardTile.h
    "NormParams": "<4Q6q2qfi",                             # NormTile.h
    "NormQuantParams": "<4Q6q2qfiQQii",                    # NormTile.h
    "NormBwdParams": "<8Q9q3qfi",                          # NormTile.h
    "TokenQuantParams": "<Q3qQQ2q2I2iQq",                  # W8A8Tile.h
    "W8A8Params": "<3Q4qQqQqQ2q3q2I2i6q",                  # W8A8Tile.h
    # (256 AdamWTensors: AdamWTile.h's kAdamWTensors.)
    "AdamWParams": "<Q4f2i" + "7Q2q" * 256,                 # AdamWTile.h
}


def pack(name, *fields):
    """The bytes of the kernel parameter struct `name` holding `fields`."""
    return struct.pack(FORMATS[name], *fields)
