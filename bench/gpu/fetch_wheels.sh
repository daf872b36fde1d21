#!/usr/bin/env bash
# Fetch, on this machine, the wheels the GPU machine lacks for running the benchmarks there.
#
#     bash bench/gpu/fetch_wheels.sh        # writes .whl/ (git-ignored), about 51 MB
#
# The lent GPU machine (see README, "Benchmarks on a GPU") has Python 3.12 with CUDA PyTorch,
# transformers, tokenizers, numpy, onnxruntime and OpenCV, and reaches no package registry. What it
# lacks (Django, DRF, Celery, pydantic, gunicorn, the safety checks' packages...) travels with the
# working tree as CPython 3.12 wheels, at the versions CI tests here. bench/gpu/run.sh installs them
# there; bench/gpu/on_the_gpu_machine.txt lists what the machine has. torch, transformers and
# tokenizers stay the machine's own: a CUDA build of torch is what we
# want there, and it is the one that machine's transformers was built against.
set -euo pipefail
cd "$(dirname "$0")/../.."
PINS=(
    django==5.2.19
    asgiref==3.13.0
    sqlparse==0.6.1
    djangorestframework==3.18.3
    drf-spectacular==0.30.0
    drf-spectacular-sidecar==2026.10.1
    django-filter==26.2
    inflection==0.5.1
    uritemplate==4.2.0
    jsonschema==4.26.0
    jsonschema-specifications==2025.9.1
    referencing==0.37.0
    rpds-py==2026.9.1
    celery==5.7.0
    kombu==5.7.0
    billiard==4.3.2
    vine==5.1.0
    amqp==5.4.2
    click-didyoumean==0.3.1
    click-plugins==1.1.1.2
    click-repl==0.4.1
    prompt-toolkit==3.0.53
    wcwidth==0.9.5
    tzlocal==5.4.5
    redis==8.1.0
    dj-database-url==3.1.2
    pydantic==2.14.4
    pydantic-core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5     # pydantic imports it; the machine has only typing-inspect
    typing-extensions==4.16.0    # pydantic-core needs a recent one
    pydantic-settings==2.16.3
    python-dotenv==1.2.4
    gunicorn==27.0.1
    whitenoise==6.12.0
    pyahocorasick==2.3.1
    python-stdnum==2.2
    phonenumbers==9.0.43
    alt-profanity-check==1.9.1
    joblib==1.6.0                # pinned exactly by alt-profanity-check: its model is pickled with it
    nudenet==3.4.2
    scikit-learn==1.9.1          # likewise: the profanity model is a scikit-learn 1.9.1 pipeline
    narwhals==2.29.0             # scikit-learn 1.9.1 needs a recent one
    babel==2.18.0
    setuptools==84.2.1
)
# Afresh each time: two versions of one package in .whl/ would stop the whole install there.
rm -rf .whl && mkdir .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest .whl \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    "${PINS[@]}"
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1), in .whl/"
