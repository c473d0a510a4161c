"""Teacher backends behind one interface (base.Teacher). Heavy imports happen on use."""

from __future__ import annotations

from importlib import import_module

from factory.config import TeacherConfig
from factory.teachers.base import Teacher

BACKENDS = {  # backend name -> "module:class"; a dict is enough until a plugin system is needed
    "local": "factory.teachers.local:LocalTeacher",
    "openai": "factory.teachers.openai:OpenAITeacher",
    "vllm": "factory.teachers.vllm:VLLMTeacher",
}


def make_teacher(cfg: TeacherConfig) -> Teacher:
    """The backend of `cfg` (a LocalTeacherConfig, OpenAITeacherConfig or VLLMTeacherConfig), built on it."""
    module, cls = BACKENDS[cfg.backend].split(":")
    return getattr(import_module(module), cls)(cfg)
