"""What end-to-end modules share: one stack of the built-in plugins on tiny models (``models_stack``).

test_builtin_plugins and test_openai_client each started a stack of their own, built the same tiny models
for it and had its worker load them: the same installation twice, some 15 s of this 2-core machine. Each
module's tests work in projects of their own (``shop``; ``held`` and ``live``), so one installation serves
both without one module's data reaching the other's answers.
"""

from __future__ import annotations

import threading

import pytest

from tests.e2e.stack import Stack
from tests.support.tiny_diffusion import build_tiny_sd_pipeline
from tests.support.tiny_features import build_tiny_feature_extractor
from tests.support.tiny_lm import build_tiny_chat_lm


def build_tiny_models(models) -> None:
    """Tiny models at the built-in plugins' default model directories (the demo models of `make demo` would
    take minutes to train); the built-in plugins and safety checks come from the installed entry points."""
    build_tiny_chat_lm(models / "demo" / "chat-lm")
    build_tiny_sd_pipeline(models / "demo" / "image-digits")
    build_tiny_feature_extractor(models / "demo" / "image-features")  # image evaluation runs' scoring


class ThreadWithResult(threading.Thread):
    def run(self):
        self.error = None
        try:
            super().run()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            self.error = error

    def result(self):
        self.join()
        if self.error is not None:
            raise self.error


class ModelsStack:
    """Started by the first test that asks for it; stopped after the last test of a run of tests that use it
    (``pytest_runtest_teardown`` below), so that it neither starts twice for neighbouring modules nor idles
    through the rest of the suite, and at the end of the session whatever happened."""

    def __init__(self, tmp_path_factory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.stack: Stack | None = None

    def get(self) -> Stack:
        if self.stack is None:
            root = self.tmp_path_factory.mktemp("models-stack")
            models = root / "models"
            stack = Stack("embedded", root)
            stack.env["ATELIER_MODELS_ROOT"] = str(models)
            # The models are needed at the first job only: build them while the stack starts.
            builder = ThreadWithResult(target=build_tiny_models, args=(models,))
            builder.start()
            try:
                # One worker process: each process of a pool loads its own models, and the tests need them once.
                stack.start(worker_concurrency=1)
                builder.result()
            except BaseException:
                builder.join()
                stack.stop(graceful=False)
                raise
            self.stack = stack
        return self.stack

    def stop(self) -> None:
        stack, self.stack = self.stack, None
        if stack is not None:
            stack.stop(graceful=False)  # the tests are over: how it stops is not in question here


_models_stacks: list[ModelsStack] = []


@pytest.fixture(scope="session")
def models_stack(tmp_path_factory):
    """The shared stack's keeper; a module takes the stack with ``models_stack.get()`` in a module-scoped
    fixture, and names ``models_stack`` in its ``usefixtures`` mark so that every one of its tests counts as
    one that uses it."""
    keeper = ModelsStack(tmp_path_factory)
    _models_stacks.append(keeper)
    try:
        yield keeper
    finally:
        _models_stacks.remove(keeper)
        keeper.stop()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """After the fixtures of ``item`` are torn down: stop the shared stack unless the next test uses it."""
    if nextitem is None or "models_stack" not in nextitem.fixturenames:
        for keeper in _models_stacks:
            keeper.stop()
