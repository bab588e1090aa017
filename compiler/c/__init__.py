"""The C backend's code generator (entry point: :func:`deepprob.compiler.c_step.compile_c`), by concern:

- :mod:`.values`: a tensor value of the generated code (:class:`~.values.Ref`) and the C spelling of types,
  literals, math calls and loops;
- :mod:`.loops`: fused loop nests (:class:`~.loops.LoopGroup`) and the merging of dimensions;
- :mod:`.emitter`: the function being written (:class:`~.emitter.Emitter`): buffers, constants, loop nests,
  elementwise operations and their fusion; and the interface of the emitters below (an :class:`~.emitter.Op`
  in, its value out);
- one module per family of operations, each with its table ``OPS`` (op name -> emitter):
  :mod:`.pointwise` (elementwise arithmetic), :mod:`.reductions` (sums, extrema, softmax),
  :mod:`.matmul` (matrix products), :mod:`.linalg` (Cholesky, triangular solves, their checks),
  :mod:`.views` (views, scatters into views, concatenation, copies, creation), :mod:`.indexing` (rows picked
  or updated by an index tensor);
- :mod:`.generator`: the walk over the traced graph, dispatching each operation by those tables;
  :mod:`.assembly`: the C source of the whole function.
"""
