"""Graph rewrites of an exported network that onnxruntime's own optimiser does not make.

:func:`fold_frame_convolutions`: torch exports a convolution over frequency only
(``models.layers.FrameConv2d`` with a kernel one frame high) as *one image per frame*:
``[B, C, T, F]`` → Transpose → Reshape → Transpose → ``[B·T, C, 1, F]`` → Conv →
Transpose → Reshape → Transpose → ``[B, C', T, F']``. A kernel one row high applied to
every row of one image is the same arithmetic, so the six layout nodes (and the Shape /
Gather / Concat nodes that compute their shapes) go and the convolution runs on
``[B, C, T, F]`` directly: in the bundled model that layer was 18 % of a chunk plus 4 %
in its transposes and reorders (onnxruntime's profiler, one thread). Outputs are the same
up to float rounding (the sums run in another order); ``tests/test_quantize.py`` checks.
Needs the ``onnx`` package (the ``[torch]`` extra).
"""

from __future__ import annotations

from typing import Any


def _attribute(node: Any, name: str) -> Any:
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return None


def _perm(node: Any, perm: list[int]) -> bool:
    return node is not None and node.op_type == "Transpose" and list(_attribute(node, "perm") or []) == perm


def fold_frame_convolutions(model: Any) -> int:
    """Rewrite every per-frame convolution of ``model`` (an ``onnx.ModelProto``, in place); how many were folded."""
    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only_consumer(name: str) -> Any:
        """The one consumer of ``name`` besides Shape nodes (which only feed the layout's own reshapes)."""
        found = [node for node in consumers.get(name, []) if node.op_type != "Shape"]
        return found[0] if len(found) == 1 else None

    folded = 0
    for conv in list(graph.node):
        kernel = _attribute(conv, "kernel_shape")
        if conv.op_type != "Conv" or not kernel or kernel[0] != 1 or (_attribute(conv, "group") or 1) != 1:
            continue
        into = producer.get(conv.input[0])  # Transpose(0,3,1,2) ← Reshape ← Transpose(0,2,3,1) ← X
        reshape_in = producer.get(into.input[0]) if _perm(into, [0, 3, 1, 2]) else None
        first = (
            producer.get(reshape_in.input[0]) if reshape_in is not None and reshape_in.op_type == "Reshape" else None
        )
        out = only_consumer(conv.output[0])  # → Transpose(0,2,3,1) → Reshape → Transpose(0,3,1,2) → Y
        reshape_out = only_consumer(out.output[0]) if _perm(out, [0, 2, 3, 1]) else None
        last = (
            only_consumer(reshape_out.output[0])
            if reshape_out is not None and reshape_out.op_type == "Reshape"
            else None
        )
        if not (_perm(first, [0, 2, 3, 1]) and _perm(last, [0, 3, 1, 2])):
            continue
        conv.input[0] = first.input[0]
        conv.output[0] = last.output[0]
        layout = {id(node) for node in (first, reshape_in, into, out, reshape_out, last)}
        kept = [node for node in graph.node if id(node) not in layout]
        del graph.node[:]
        graph.node.extend(kept)
        folded += 1
    if folded:
        remove_dead_nodes(model)
    return folded


def remove_dead_nodes(model: Any) -> None:
    """Drop the nodes no graph output depends on (what a rewrite left dangling)."""
    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    needed: set[int] = set()
    stack = [producer[o.name] for o in graph.output if o.name in producer]
    while stack:
        node = stack.pop()
        if id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(producer[name] for name in node.input if name in producer)
    keep = [node for node in graph.node if id(node) in needed]
    del graph.node[:]
    graph.node.extend(keep)


__all__ = ["fold_frame_convolutions", "remove_dead_nodes"]
