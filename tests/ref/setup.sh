#!/bin/bash
# Creates the reference environment (HF torch, transformers, peft, tokenizers,
# safetensors, h5py, numpy, scikit-learn, seqeval at the exact versions of
# tests/ref/requirements.txt) in a git-ignored virtual environment, for the
# test suite only. Idempotent: when the environment was built from the same
# requirements file (its sha256 is stored in the venv) and still imports, it
# does nothing.
#
# usage: tests/ref/setup.sh          (prints the venv's python on success)
# env:   LORA_REF_VENV  where the venv lives (default: .venv-ref in the repository)
#        LORA_REF_PYTHON  the python that creates it (default: python3)
# Exit status: 0 ready, 1 could not be installed (the message says why and how).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${LORA_REF_VENV:-$root/.venv-ref}
req=$here/requirements.txt
py=${LORA_REF_PYTHON:-python3}
stamp=$venv/.lora-ref-stamp
want=$(sha256sum "$req" | cut -d' ' -f1)

check() {
    "$venv/bin/python" -c 'import torch, transformers, peft, safetensors, tokenizers, h5py, numpy, sklearn, seqeval' \
        >/dev/null 2>&1
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && check; then
    echo "$venv/bin/python"
    exit 0
fi

how="to install it by hand: $py -m venv $venv && $venv/bin/pip install -r $req"
if ! command -v "$py" >/dev/null 2>&1; then
    echo "ref-env: $py not found; the reference environment needs Python 3.10+ with venv ($how)" >&2
    exit 1
fi
echo "ref-env: creating the reference environment in $venv (first install: about 5 GB, 2-3 minutes)" >&2
t0=$SECONDS
rm -rf "$venv"
if ! "$py" -m venv "$venv" >&2; then
    echo "ref-env: '$py -m venv $venv' failed (Debian: apt-get install python3-venv); $how" >&2
    exit 1
fi
if ! "$venv/bin/pip" install --quiet --no-input --disable-pip-version-check -r "$req" >&2; then
    echo "ref-env: pip install -r $req failed (is PyPI reachable?); $how" >&2
    exit 1
fi
if ! check; then
    echo "ref-env: the environment in $venv was installed but its packages do not import:" >&2
    "$venv/bin/python" -c 'import torch, transformers, peft, safetensors, tokenizers, h5py, numpy, sklearn, seqeval' >&2
    exit 1
fi
echo "$want" >"$stamp"
echo "ref-env: ready in $((SECONDS - t0)) s ($(du -sh "$venv" | cut -f1))" >&2
echo "$venv/bin/python"
