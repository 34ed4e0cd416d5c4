//===- Passes.td - CUDA code generation -----------------*- tablegen -*-===//

#ifndef QOPT_TARGET_CUDA_TRANSFORMS_PASSES_TD
#define QOPT_TARGET_CUDA_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def QOptParallelToGPUPass
    : Pass<"qopt-parallel-to-gpu", "::mlir::func::FuncOp"> {
  let summary = "Runs each outermost scf.parallel as one GPU kernel launch";
  let description = [{
    Replaces every `scf.parallel` that is not nested in another one or in a
    `gpu.launch` (as `qopt-serialize-nested-parallel{last-dim-sequential=false}`
    leaves them: inner loops sequential) by a one-dimensional `gpu.launch`
    over the loop's iterations: thread `blockIdx.x * block-size +
    threadIdx.x` takes the iteration of that combined index, the last
    dimension varying fastest, so that neighbouring threads touch
    neighbouring elements (coalesced accesses). Threads past the last
    iteration do nothing; a loop with no iterations launches nothing (a
    grid of zero blocks is an error in CUDA). A loop whose iterations are
    known at compile time to be fewer than a block's threads launches one
    block of that many threads rounded up to whole warps (one warp for
    `qopt-serial-to-gpu`'s one-iteration loops).

    The iteration's indices are recovered by division by the trip counts
    of the dimensions after it, in 32-bit arithmetic when the number of
    iterations fits (64-bit division costs tens of instructions on a GPU).
    The kernels have no barriers and no shared memory, so
    `qopt-gpu-launch-to-loops` can run them on the CPU unchanged. A
    run-time check (`cf.assert`) inside a loop nest is an error: in a
    kernel it would leave the GPU context unusable.

    Constant globals and views of them are rebuilt inside the kernel (its
    module gets its own copy). So are scalars the host computed from loads
    of a public function's argument that nothing writes (the random key's
    words, which dropout's streams take): the kernel loads them itself, so
    the host reads no device memory there (no wait, and a CUDA graph
    replays the launch with the next run's key).
  }];
  let options = [
    Option<"blockSize", "block-size", "unsigned", "256",
           "Threads per block (a multiple of 32, at most 1024)">,
  ];
  let dependentDialects = ["::mlir::gpu::GPUDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::arith::ArithDialect",
                           "::mlir::cf::ControlFlowDialect"];
}

def QOptMemRefCopyToLinalgPass
    : Pass<"qopt-memref-copy-to-linalg", "::mlir::func::FuncOp"> {
  let summary = "Turns buffer copies into linalg.copy loop nests";
  let description = [{
    Bufferization copies buffers with `memref.copy`, which the CPU runs as a
    library call (memrefCopy). Rewritten as `linalg.copy`, a copy becomes a
    loop nest like any other, and on the CUDA target a kernel: the data
    stays on the GPU instead of migrating to the host and back.

    First, a memref operand of a kernel-library call (`qopt_cuda_*`) that
    is a constant or a view of one (`memref.get_global`: host memory, which
    generated kernels read through device copies but the library would
    read through the host pointer) is copied into a fresh buffer before the
    call and freed after it: a constant attention mask, norm weight or set
    of Hadamard signs reaches the library on the GPU. The exception is what
    the library reads on the host as it plans the launch: the Hadamard
    transforms' H_base (operand 5 of `qopt_cuda_hadamard` and
    `qopt_cuda_hadamard_quant`), packed into the launch's parameters, stays
    the host constant.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def QOptGroupParallelLoopsPass
    : Pass<"qopt-group-parallel-loops", "::mlir::func::FuncOp"> {
  let summary = "Moves independent parallel loops over the same space next "
                "to each other";
  let description = [{
    `scf-parallel-loop-fusion` fuses only neighbouring loops. An optimizer
    step updates each parameter in a loop of its own, the parameters'
    shapes alternating, with buffer allocations between. Within a run of
    `scf.parallel` loops, allocations, deallocations and operations without
    memory effects, this pass moves a loop up to just after the nearest
    earlier loop with the same bounds (the same values) when it touches
    nothing that a loop it passes writes and writes nothing they touch, and
    everything it uses is defined before that loop (allocations it uses,
    whose sizes are, move with it). Buffers count as distinct when both are
    different allocations, or one is an allocation and the other a function
    argument; anything else (two arguments, which may alias) as the same.
    Loops holding operations with other memory effects do not move.
    `scf-parallel-loop-fusion` can then make one kernel of them: the AdamW
    updates of parameters of the same shape, for instance.
  }];
  let dependentDialects = ["::mlir::scf::SCFDialect"];
}

def QOptDeviceChecksPass
    : Pass<"qopt-device-checks", "::mlir::ModuleOp"> {
  let summary = "Makes index range checks on the device, reported through a "
                "status word the runtime reads after the run";
  let description = [{
    A range check of indices (a `cf.assert` marked `qopt.data_check`: a
    Gather's, a GatherND's, an embedding's) reads the indices. On the host
    that is a wait for the kernels before it, and on a GPU the ids are
    often computed by kernels (the position ids a Llama export gathers
    with). This pass gives every public function a last argument
    `memref<1xi32> {qopt.check_status}`, which it sets to 0 first, and
    replaces each such assertion in a function's body block by

      * a copy, right where the assertion stood, of the host code that
        computes its condition (the operations it uses, and every store
        before it into the stack buffers they read), into private stack
        buffers;
      * and, when the condition is false and no check failed before, a
        store of the check's code (its message's position in the module's
        `qopt.device_checks` list, plus one) into the status word.

    `qopt-serial-to-gpu` then runs that copy as a one-thread kernel queued
    behind the kernels writing the indices. The host code that computed the
    condition before is removed when nothing else reads it: loads and pure
    operations whose values nothing live uses, stores into stack buffers
    nothing live reads, and loops left empty.

    The runtime passes the status word (manifest key `checks`: the
    messages) and, after the run, stops with the failed check's message,
    dropping the run's results and parameter updates. Gathers clamp their
    indices into the table, so a bad index read on the device reads a
    wrong row, never outside the buffer, before the run fails.

    A check whose condition needs anything else (a call, an allocation, a
    store into device memory) stays a host assertion. Without marked
    checks the module is unchanged.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::scf::SCFDialect"];
}

def QOptSmallLoopsToHostPass
    : Pass<"qopt-small-loops-to-host", "::mlir::func::FuncOp"> {
  let summary = "Runs small parallel loops whose results only the host "
                "reads on the host";
  let description = [{
    Exports compute shapes with tensors: a Concat of 1-element i64 tensors
    becomes parallel loops of one iteration each, whose buffer the host
    then reads for a reshape's sizes. As kernels, the host would wait for
    the GPU before every such read. This pass turns each `scf.parallel`
    (outermost, at most 64 iterations known at compile time) that stores
    only into allocations the host alone uses into sequential `scf.for`
    loops on the host. An allocation counts as the host's when every use,
    through views, is a load or store outside other parallel loops, a
    reshape's shape, a deallocation, a view so used, or a call of a host
    function; `qopt-gpu-host-sync` then moves the small ones to the stack,
    and the host reads them without waiting. Loops that store into memory
    a kernel uses stay parallel.
  }];
  let dependentDialects = ["::mlir::scf::SCFDialect"];
}

def QOptSerialToGPUPass
    : Pass<"qopt-serial-to-gpu", "::mlir::func::FuncOp"> {
  let summary = "Runs host code that touches device memory as one-thread "
                "parallel loops (kernels), so the host need not wait there";
  let description = [{
    After `convert-linalg-to-parallel-loops`, a reduction to a 0-d result (a
    loss's sum over tokens, the count of labels, a norm) is a sequential
    loop nest, and the scalar arithmetic between such results (a mean, a
    step counter's increment) plain host code. On the CUDA target the host
    would have to wait for every queued kernel before running them, and
    read the data through managed memory. This pass wraps each maximal run
    of such code in a public function's blocks into an `scf.parallel` of
    one iteration, which `qopt-parallel-to-gpu` launches as a one-thread
    kernel queued behind the others: the same operations in the same order
    (on a GPU, math functions such as `pow` and `log` are libdevice's, which
    may differ from the host's in the last bit).

    A run is a sequence of consecutive operations of a block that are
    `memref.load` / `memref.store`, static `memref.alloca` of at most 64
    elements (a kernel's stack is small), pure `arith`,
    `math` and `index` operations, `memref.dim`, memref views, and `scf.for`
    / `scf.if` holding only such operations, where
      * no result is used outside the run (host code keeps what it reads:
        a run-time check's minimum and maximum stay on the host),
      * every memory access is to device memory (an allocation, a function
        argument, a view of one; constants are read) or to a stack buffer
        of the run itself, which moves into the kernel; an allocation only
        host code uses counts as device memory where only runs load and
        store it (a zero several reductions start from, partial sums of a
        gradients' norm), else as the host's.
    Allocations (whose sizes the run does not compute) move before the run
    and deallocations after it, so neither cuts it. A run that touches no
    device memory stays on the host. Private functions (the deallocation
    helper, whose arrays are host memory) are left alone.
  }];
  let dependentDialects = ["::mlir::scf::SCFDialect",
                           "::mlir::arith::ArithDialect"];
}

def QOptGPUHostSyncPass : Pass<"qopt-gpu-host-sync", "::mlir::ModuleOp"> {
  let summary = "Waits for the GPU only where host code reads or writes "
                "memory";
  let description = [{
    Kernel launches are asynchronous: the CUDA host library queues each on
    the model's stream and returns (`mgpuStreamSynchronize` only marks the
    stream busy). Host code that touches memory a kernel may be using —
    `memref.load`, `memref.store`, `memref.reshape` (it reads its shape
    operand) and calls of host functions — must wait first: before each such
    op, where a launch may have been queued since the last wait (a
    `gpu.launch_func`, or a call of the kernel library's `qopt_cuda_qlinear`
    or `qopt_cuda_sgemm`,
    earlier in the block, or in a region before it; at the
    start of a region, conservatively), this pass inserts a call of
    `qopt_cuda_host_sync`, which waits for the stream when work is queued
    and stops the run with a kernel's failure. A `func.return` counts as a
    host access (the caller reads the results). Launches then run back to
    back instead of with a round trip through the host between each two.
    A public function's arguments that nothing in it writes (no store, no
    copy, no kernel storing through the launch's operand, no call taking
    them or their address: the model's inputs, such as token ids, a mask or
    a random key) need no wait either: kernels only read them (the runtime
    passes distinct buffers, so arguments do not alias).
    Small host-only buffers move to the stack first and need no wait; so do
    the arrays of base addresses and ownership flags that
    bufferization-lower-deallocations passes its `dealloc_helper`, whose
    call and body then need none either (it never reads the buffers those
    addresses name).

    Last, the pass lists in the module's `qopt.cuda_graphs` the public
    functions whose host code reads and writes only host memory (stack
    buffers, constants; not their own arguments) and calls nothing but the
    kernel library, the deallocation helper and the wait. What such a
    function queues depends only on its arguments' shapes and addresses:
    the runtime captures its launches once per input shapes and replays
    them as a CUDA graph (`checks` then report an index out of range).
  }];
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

def QOptGPULaunchToLoopsPass
    : Pass<"qopt-gpu-launch-to-loops", "::mlir::func::FuncOp"> {
  let summary = "Runs GPU kernels on the CPU as loops over blocks and threads "
                "(testing)";
  let description = [{
    Replaces every `gpu.launch` by `scf.for` loops over its grid and its
    blocks, in which the block and thread indices are the loops' induction
    variables, and the grid and block sizes the launch's operands: the
    kernel's own index arithmetic and bounds guards then run on the CPU,
    where their results can be compared with a reference. Only kernels
    whose threads do not communicate can run this way: a barrier, a shuffle
    or workgroup memory in a kernel is an error.
  }];
  let dependentDialects = ["::mlir::scf::SCFDialect"];
}

def QOptMergeGPUModulesPass
    : Pass<"qopt-merge-gpu-modules", "::mlir::ModuleOp"> {
  let summary = "Moves every outlined kernel into one gpu.module";
  let description = [{
    `gpu-kernel-outlining` puts each kernel in a `gpu.module` of its own,
    which the host loads separately (a module load, and a cubin per kernel
    in the library). This pass moves all kernels into one `gpu.module`
    (named by `name`, renaming kernels whose names clash) and points every
    `gpu.launch_func` at it: one PTX file, one cubin per architecture, one
    module load.
  }];
  let options = [
    Option<"moduleName", "name", "std::string", "\"qopt_kernels\"",
           "Name of the merged gpu.module">,
  ];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

#endif // QOPT_TARGET_CUDA_TRANSFORMS_PASSES_TD
