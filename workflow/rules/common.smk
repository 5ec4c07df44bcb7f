"""Config validation, the sweep's product, paths and resource estimates (shared by every rule file)."""
import math
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

REPO = Path(workflow.basedir).parent
# The workflow and its jobs use the llama package of this checkout, also under --directory
# and on cluster nodes (each job re-reads this file).
sys.path.insert(0, str(REPO))
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
# Rules run `python -m llama...`: make that the interpreter running Snakemake (its venv), not
# whatever `python` comes first on the caller's PATH.
os.environ.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))

from llama import techniques  # noqa: E402
from llama.results import DEFAULT_EVAL_WINDOW, LOCAL_TASK  # noqa: E402
from llama.model import ARCHITECTURES, ModelArgs, find_architecture  # noqa: E402


# ----------------------------------------------------------------------------- config


def schema_error_message(err):
    """One line from a jsonschema error: the key, what is wrong, what is allowed."""
    key = ".".join(str(p) for p in err.absolute_path)
    where = f"config key '{key}'" if key else "config"
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))
        return f"{where}: unknown key(s) {unknown}; allowed keys: {allowed}"
    if err.validator == "enum":
        return f"{where}: {err.instance!r} is not allowed; allowed values: {err.validator_value}"
    hint = err.schema.get("description")
    return f"{where}: {err.message}" + (f" ({hint})" if hint else "")


try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError as e:
    # snakemake's message is jsonschema's multi-page dump; the cause names key and allowed values.
    cause = e.__context__
    raise WorkflowError(schema_error_message(cause) if cause is not None else str(e)) from None

GEN = config["generate"]
# generate.compile: false and true are the older spellings of "none" and "full".
COMPILE_MODE = {False: "none", True: "full"}.get(GEN["compile"], GEN["compile"])
EVAL = config["eval"]


def slug(name):
    """A model name as one path component: meta-llama/Llama-3.1-8B -> meta-llama--Llama-3.1-8B."""
    return "--".join(name.split("/"))


def is_synthetic(name):
    # A registry shape name (no '/') has no weights to download.
    return config["synthetic"] or "/" not in name


def source_of(name):
    return "synthetic" if is_synthetic(name) else "hf"


def shape_of(name):
    """ModelArgs of a model, or None for an HF repo outside the registry (convert reads its config.json)."""
    try:
        return find_architecture(name)[1]
    except KeyError:
        return None


MODEL_NAMES = {slug(name): name for name in config["models"]}  # path component -> model name


def prompt_tokens(prefill):
    # generate's default prompt is a short sentence; 32 tokens bounds it for any tokenizer.
    return prefill if prefill is not None else 32


def prefill_label(prefill):
    return "default" if prefill is None else str(prefill)


def config_problems():
    """Every combination of the sweep that cannot run, as one line each."""
    problems = []
    for spec in config["techniques"]:
        try:
            techniques.parse(spec)
        except techniques.UnknownTechnique as e:
            problems.append(f"techniques: {spec!r}: {e}")
    for name in config["models"]:
        args = shape_of(name)
        if args is None:
            if is_synthetic(name):
                problems.append(f"models: {name!r} has no registered shape to synthesize; known: {', '.join(ARCHITECTURES)}")
            continue
        for cache in GEN["cache_sizes"]:
            if cache > args.max_seq_len:
                problems.append(f"{name}: cache size {cache} > the model's max_seq_len {args.max_seq_len}")
            for prefill in GEN["prefill_sizes"]:
                need = prompt_tokens(prefill) + GEN["max_new_tokens"]
                if cache < need:
                    problems.append(f"{name}: cache size {cache} < prompt ({prefill_label(prefill)}: "
                                    f"{prompt_tokens(prefill)} tokens) + max_new_tokens {GEN['max_new_tokens']}")
    return problems


if problems := config_problems():
    raise WorkflowError("the config asks for runs that cannot work:\n  " + "\n  ".join(problems))

# Several GPUs on one host: each GPU job takes its own GPU through this launcher (llama/gpus.py).
from llama import gpus  # noqa: E402

GPU_LAUNCH = "python -m llama.gpus run --"
_gpu_slots = workflow.global_resources.get("gpu")
gpus.check_gpu_slots(getattr(_gpu_slots, "value", _gpu_slots))


# ----------------------------------------------------------------------------- paths

CHECKPOINT_FILES = ("model.pth", "tokenizer.model", "meta.json")
GENERATE_JSON = "results/generate/{source}/{model}/{technique}/cache{cache}-prefill{prefill}-batch{batch}.json"
EVAL_JSON = "results/eval/{source}/{model}/{technique}/{task}.json"

wildcard_constraints:
    source="synthetic|hf",
    model="[^/]+",
    technique="[^/]+",
    cache=r"\d+",
    prefill=r"default|\d+",
    batch=r"\d+",
    task="[^/]+",


def checkpoint_dir(source, model):
    return f"resources/checkpoints/{source}/{model}"


def checkpoint_files(wildcards):
    return [f"{checkpoint_dir(wildcards.source, wildcards.model)}/{f}" for f in CHECKPOINT_FILES]


def model_name(wildcards):
    return MODEL_NAMES[wildcards.model]


def generate_results():
    return [GENERATE_JSON.format(source=source_of(n), model=slug(n), technique=t, cache=c,
                                 prefill=prefill_label(p), batch=b)
            for n in config["models"] for t in config["techniques"] for c in GEN["cache_sizes"]
            for p in GEN["prefill_sizes"] for b in GEN["batch_sizes"]]


def eval_tasks(name):
    if not EVAL["enabled"]:
        return []
    # Accuracy of random weights means nothing: synthetic models only check the pipeline offline.
    return [LOCAL_TASK] if is_synthetic(name) else EVAL["tasks"]


def eval_results():
    return [EVAL_JSON.format(source=source_of(n), model=slug(n), technique=t, task=task)
            for n in config["models"] for t in config["techniques"] for task in eval_tasks(n)]


# ----------------------------------------------------------------------------- resources
# Estimates for schedulers (SLURM's --mem and -t); locally they only matter under --resources mem_mb=.


def weight_bytes(args, bytes_per_param=2):
    per_layer = args.dim * (args.n_heads + 2 * args.n_kv_heads) * args.head_dim + args.dim * args.dim \
        + 3 * args.dim * args.intermediate_size + 2 * args.dim
    embeddings = args.vocab_size * args.dim * (1 if args.tie_embeddings else 2)
    return (args.n_layers * per_layer + embeddings + args.dim) * bytes_per_param


def kv_bytes(args, batch, cache, bytes_per_value=2):
    return 2 * args.n_layers * batch * args.n_kv_heads * cache * args.head_dim * bytes_per_value


def host_mem_mb(name, batch=1, cache=0, factor=1.0):
    """Host memory of a job: weights (loaded on the host first) and, on CPU, the KV cache, plus 4 GB."""
    args = shape_of(name)
    if args is None:
        return 64 * 1024  # unregistered HF repo: size unknown until converted
    return math.ceil((factor * weight_bytes(args) + kv_bytes(args, batch, cache)) / 2**20) + 4096


def generate_mem_mb(wildcards):
    return host_mem_mb(model_name(wildcards), int(wildcards.batch), int(wildcards.cache))


def generate_runtime_min(wildcards):
    # Compiling the whole step takes minutes (up to ~5 on an H100; "block": seconds); long contexts
    # prefill and decode slower.
    compile_min = 10 * ((COMPILE_MODE == "full") + GEN["compile_prefill"])
    return 15 + compile_min + 5 * math.ceil(int(wildcards.cache) / 16384)


def eval_mem_mb(wildcards):
    args = shape_of(model_name(wildcards))
    return host_mem_mb(model_name(wildcards), 1, min(DEFAULT_EVAL_WINDOW, args.max_seq_len) if args else 0)


def eval_table_target():
    return ["results/eval_table.md"] if eval_results() else []
