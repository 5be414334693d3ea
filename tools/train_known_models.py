"""Train the known-data models of issue 26 (declared in results/declarations/issue26_known_models.md): four LLaMAs,
each on its own mixture of the offline domains, no domain in two mixtures, two at a time on one torch thread each.

    python tools/train_known_models.py                  # all four; resumes where a cut-off run stopped
    python tools/train_known_models.py --names python   # one of them
    python tools/train_known_models.py --until 500      # stop every model at step 500 (its state is kept)

Training state is written to the cache every few minutes (calibsynth.pretrain.train_model), so a killed run loses
little; a finished model is written whole into models/<name> (weights in bfloat16 safetensors, tokenizer, manifest)
and is left alone by the next run. The shared tokenizer (models/tokenizer) is learned first, once.
"""
from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

KNOWN_PROFILE = "quick"  # the known-data models are the quick profile's (see the declaration for why each size)


def train_one(name: str, until: int | None, root: str) -> str:
    from calibsynth.pretrain import pretrain_config, train_model

    done = train_model(name, pretrain_config(KNOWN_PROFILE), root, until_step=until, progress=True, weights_dtype="bfloat16")
    return f"{name}: {'written to ' + str(done) if done else 'stopped early, state kept'}"


def main(argv=None):
    from calibsynth.pretrain import MANIFEST, MIXTURES, PretrainConfig, ensure_tokenizer, pretrain_config, read_manifest

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--names", nargs="+", default=list(MIXTURES), choices=list(MIXTURES))
    ap.add_argument("--until", type=int, default=None, help="stop each model at this step (resumable)")
    ap.add_argument("--jobs", type=int, default=2, help="models trained side by side, one torch thread each")
    ap.add_argument("--root", default=str(ROOT / "models"))
    args = ap.parse_args(argv)
    config = pretrain_config(KNOWN_PROFILE)
    todo = []
    for name in args.names:
        if (Path(args.root) / name / MANIFEST).exists():
            done = read_manifest(Path(args.root) / name)
            if asdict(PretrainConfig(**done["config"])) != asdict(config) or done["domains"] != list(MIXTURES[name]):
                raise SystemExit(f"{args.root}/{name} holds a model trained otherwise; move it away to train this one")
        else:
            todo.append(name)
    # learned once, before the jobs start (they would race); the recipe names every offline source, so a tokenizer
    # made before the man pages were added is learned again, and only while no model of it is finished
    try:
        ensure_tokenizer(config, args.root)
    except ValueError as err:
        if len(todo) < len(args.names) or "was made with" not in str(err):
            raise
        ensure_tokenizer(config, args.root, retrain=True)
    with ProcessPoolExecutor(args.jobs) as pool:  # one torch thread each: train_lm sets it (PretrainConfig.threads)
        for line in pool.map(train_one, todo, [args.until] * len(todo), [args.root] * len(todo)):
            print(line, flush=True)


if __name__ == "__main__":
    main()
