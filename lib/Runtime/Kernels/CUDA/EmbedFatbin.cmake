# cmake -DINPUT=….fatbin -DOUTPUT=….cpp -P EmbedFatbin.cmake
# The fatbin as a C array (qopt_cuda_library_fatbin; a fatbin's header holds
# its size) for libqopt_cuda_library.a, which the CUDA host library loads
# at its first call.
file(READ ${INPUT} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUTPUT}
  "// Generated from ${INPUT} by EmbedFatbin.cmake.\n"
  "extern \"C\" {\n"
  "alignas(64) extern const unsigned char qopt_cuda_library_fatbin[] = {"
  "${body}};\n"
  "}\n")
