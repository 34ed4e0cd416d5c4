# cmake -DNVCC=… -DARCH=sm_90 -DSOURCE=….cu -DINCLUDE=… -DOUTPUT=….cubin
#       -DREPORT=….txt -P RunNvcc.cmake
# One cubin, with ptxas's resource report (registers, stack, spills per
# kernel) written to REPORT; a failed compile prints the report and fails.
execute_process(
  COMMAND ${NVCC} -std=c++17 -O3 -cubin -arch=${ARCH} -Xptxas -v
    -I${INCLUDE} ${SOURCE} -o ${OUTPUT}
  RESULT_VARIABLE result
  ERROR_FILE ${REPORT})
if(NOT result EQUAL 0)
  file(READ ${REPORT} text)
  file(REMOVE ${OUTPUT})
  message(FATAL_ERROR "nvcc failed for ${ARCH}:\n${text}")
endif()
