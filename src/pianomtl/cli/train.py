"""``pianomtl train``: the options of :class:`~pianomtl.train.config.TrainConfig`, generated from its fields.

Every ``TrainConfig`` field is an option ``--field-name`` with the field's default, type
and help (``metadata["help"]``), so a new field needs no argparse line; ``model`` becomes
``--arch`` (``--model``, its old name, still works; choices from
:func:`pianomtl.models.registry.model_names`) plus one option per
:class:`~pianomtl.models.config.ModelConfig` field, and ``lambdas`` one ``--lambda-TASK``
per task. The values are checked by ``TrainConfig`` itself (one-line errors, exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from pianomtl.cli import options

MODEL_HELP = {
    "small": "feature maps of the 3×3 stem convs",
    "large": "feature maps of the 1×35 and 5×1 stem convs",
    "head": "feature maps of each head's 3×3 conv",
    "gradient": "cross-stitch only: full or detached gradients through the α units",
    "init": "cross-stitch only: α initialisation",
    "dropout": "dropout rate",
    "noise_sigma": "σ of the training noise layers",
    "embed": "sequence families: units of the per-frame embedding (hard+rnn) or of the context layer (hard+keyrnn)",
    "hidden": "sequence families: units of each recurrent layer (hard+rnn) or of the per-key layer (hard+keyrnn)",
    "cell": "sequence families: recurrent cell",
    "bidirectional": "sequence families: the non-causal (bidirectional) twin",
}
"""Help of the architecture options (the defaults are :class:`ModelConfig`'s); a field missing here
still gets an option."""

OPTION_TYPES = {"threads": options.count, "device": options.device, "lr": options.positive}
"""Argument types stricter than the field's own (the config checks again; these fail before any import)."""

COMMAND_ONLY = {"resume", "nproc"}


def _plain_type(hint: object) -> type:
    """``int`` for ``int``, ``int | None`` or ``Optional[int]``; the first non-None member of a union."""
    members = [m for m in typing.get_args(hint) if m is not type(None)]
    return members[0] if members else hint  # type: ignore[return-value]


class _DeprecatedModelFlag(argparse.Action):
    """``--model`` for the architecture: still accepted, with a note that it is now ``--arch``.

    Everywhere else ``--model`` names a model *file* (``transcribe``, ``stream``, ``serve``);
    ``train`` and ``lr-find`` choose an *architecture*, so their option is ``--arch``.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object, option: object = None):
        if option == "--model":
            print(f"note: --model is now --arch (the architecture); --model {values} still works", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_model_options(parser: argparse.ArgumentParser, default_name: str = "hard") -> list[str]:
    """``--arch`` (alias ``--model``, deprecated) and one option per :class:`ModelConfig` field;
    returns their ``dest`` names (the architecture's is ``model``, :class:`TrainConfig`'s field)."""
    from pianomtl.models.registry import GRADIENTS, INITS, ModelConfig, model_names

    parser.add_argument(
        "--arch",
        "--model",
        dest="model",
        action=_DeprecatedModelFlag,
        default=default_name,
        choices=model_names(),
        help="architecture (default: %(default)s; --model is its old, deprecated name)",
    )
    choices = {"gradient": GRADIENTS, "init": INITS}
    hints = typing.get_type_hints(ModelConfig)
    names = []
    for item in fields(ModelConfig):
        if item.name == "name":
            continue
        kind = _plain_type(hints[item.name])
        flag = "--" + item.name.replace("_", "-")
        default = "the architecture's" if item.default in (None, MISSING) else item.default
        help_text = f"{MODEL_HELP.get(item.name, f'architecture option {item.name}')} (default: {default})"
        if kind is bool:
            parser.add_argument(flag, dest=item.name, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(
                flag, dest=item.name, type=kind, default=None, choices=choices.get(item.name), help=help_text
            )
        names.append(item.name)
    return names


def add_config_options(parser: argparse.ArgumentParser, names: typing.Iterable[str] | None = None) -> list[str]:
    """Options for the :class:`TrainConfig` fields ``names`` (default: all); returns the fields added.

    ``model`` adds the architecture options, ``lambdas`` the ``--lambda-TASK`` weights.
    """
    from pianomtl.constants import TASKS
    from pianomtl.train.config import DEFAULT_LAMBDAS, TrainConfig

    wanted = None if names is None else set(names)
    hints = typing.get_type_hints(TrainConfig)
    added = []
    for item in fields(TrainConfig):
        if wanted is not None and item.name not in wanted:
            continue
        assert item.name not in COMMAND_ONLY, f"TrainConfig.{item.name} clashes with a command option"
        added.append(item.name)
        if item.name == "model":
            default_name = item.default_factory()["name"] if item.default_factory is not MISSING else "hard"
            model_names = add_model_options(parser, default_name)
            clashes = set(model_names) & {f.name for f in fields(TrainConfig)}
            assert not clashes, f"ModelConfig and TrainConfig fields share names: {clashes}"
            continue
        if item.name == "lambdas":
            for task in TASKS:
                parser.add_argument(
                    f"--lambda-{task}",
                    type=options.non_negative,
                    default=DEFAULT_LAMBDAS[task],
                    help=f"task weight λ of {task} (default: %(default)s)",
                )
            continue
        kind = _plain_type(hints[item.name])
        extra = {key: value for key, value in item.metadata.items() if key != "help"}
        help_text = item.metadata.get("help", "")
        flag = "--" + item.name.replace("_", "-")
        if item.default is MISSING and item.default_factory is MISSING:
            parser.add_argument(flag, dest=item.name, required=True, help=help_text, **extra)
        elif kind is bool:
            parser.add_argument(flag, dest=item.name, action="store_true", default=item.default, help=help_text)
        else:
            parser.add_argument(
                flag,
                dest=item.name,
                type=OPTION_TYPES.get(item.name, kind),
                default=item.default,
                help=f"{help_text} (default: %(default)s)",
                **extra,
            )
    parser.set_defaults(config_fields=added)
    return added


def model_config_from_args(args: argparse.Namespace) -> dict:
    """The architecture asked for (unset options take the architecture's defaults), as a dict."""
    from pianomtl.models.registry import ModelConfig

    given = {
        item.name: getattr(args, item.name)
        for item in fields(ModelConfig)
        if item.name != "name" and getattr(args, item.name, None) is not None
    }
    return ModelConfig(name=args.model, **given).to_dict()


def config_from_args(args: argparse.Namespace, **changes: object):  # type: ignore[no-untyped-def]
    """A :class:`TrainConfig` of the options :func:`add_config_options` added (``ValueError`` if invalid)."""
    from pianomtl.constants import TASKS
    from pianomtl.train.config import TrainConfig

    values: dict[str, object] = {}
    for name in args.config_fields:
        if name == "model":
            values["model"] = model_config_from_args(args)
        elif name == "lambdas":
            values["lambdas"] = {task: getattr(args, f"lambda_{task}") for task in TASKS}
        else:
            values[name] = getattr(args, name)
    values.update(changes)
    return TrainConfig(**values)


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--resume", action="store_true", help="continue the run in OUT (from its checkpoint.pt)")
    parser.add_argument(
        "--nproc",
        type=options.positive_count,
        default=1,
        help="data-parallel processes (DDP: gloo on CPU, NCCL on CUDA); global batch = NPROC × batch size. "
        "Or start with `torchrun --nproc-per-node N -m pianomtl.cli train ...`",
    )


def _writable_run_folder(out: Path) -> str | None:
    """``None`` if the run folder exists (made here if missing) and takes files, else the one-line reason
    (a read-only file system, no permission): said before any work instead of an ``OSError`` later."""
    import os

    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".pianomtl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return f"cannot write run folder {out}: {error.strerror or error}"
    return None


def _remove_if_unused(out: Path, created: bool) -> None:
    """A run folder this command created and that holds nothing but the run's lock file is removed
    (a refused start — a bad ``--init-from``, an empty cache — leaves no ``.training.lock`` behind)."""
    from pianomtl.train.loop import LOCK_NAME

    if not created or not out.is_dir():
        return
    try:
        if {p.name for p in out.iterdir()} <= {LOCK_NAME}:
            (out / LOCK_NAME).unlink(missing_ok=True)
            out.rmdir()
    except OSError:
        pass


def run(args: argparse.Namespace) -> int:
    from pianomtl.train.loop import check_run_folder, launch

    out: Path | None = None
    created = False
    try:
        config = config_from_args(args)
        check_run_folder(config, args.resume, must_resume=True)
        if config.init_from:  # refused before the run folder is made or locked
            from pianomtl.transcription.model_file import read_model_file

            read_model_file(config.init_from)
        out = Path(config.out)
        created = not out.exists()
        problem = _writable_run_folder(out)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        result, is_main = launch(config, resume=args.resume, nproc=args.nproc)
    except ValueError as error:  # bad option, cache, checkpoint or run folder: one line
        print(f"error: {error}", file=sys.stderr)
        if out is not None:
            _remove_if_unused(out, created)
        return 2
    except OSError as error:  # the run folder failed mid-run (a full disk, a lost mount)
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    if not is_main:
        return 0 if result["status"] == "finished" else 3
    print(json.dumps({k: result[k] for k in ("status", "validation") if k in result}, indent=1))
    return 0 if result["status"] == "finished" else 3
