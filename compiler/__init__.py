"""compiler: validated expressions --> torch.fx FFN modules --> BERT students.

One module per arrow: ``lower`` (expression -> GraphModule), ``supernet`` (weight sharing and
inheritance), ``cost`` (params/FLOPs/memory by an fx Interpreter), ``student`` (spec -> the shipped
model's own classes in ``hf/`` with compiled FFNs), ``pysource`` (expression -> readable Python),
``execute`` (module cache, torch.compile, autocast), ``export`` (ONNX), ``timing``.
"""
from __future__ import annotations

from .cost import Cost, ffn_cost, graph_cost, linear_cost, student_cost
from .execute import ModuleCache, autocast, maybe_compile
from .lower import CompileError, FFNConfig, lower
from .student import (
                      ExprBertConfig,
                      ExprBertForSequenceClassification,
                      StudentConfig,
                      build_student,
                      ffn_modules,
                      init_from_teacher,
                      layer_map,
                      load_student,
)
from .supernet import SuperFFN, inherit, load_teacher_ffn, lower_shared

__all__ = ["FFNConfig", "lower", "CompileError", "SuperFFN", "lower_shared", "inherit", "load_teacher_ffn",
           "Cost", "ffn_cost", "graph_cost", "linear_cost", "student_cost", "StudentConfig", "ExprBertConfig",
           "ExprBertForSequenceClassification", "build_student", "load_student", "ffn_modules", "init_from_teacher",
           "layer_map", "ModuleCache", "maybe_compile", "autocast"]
