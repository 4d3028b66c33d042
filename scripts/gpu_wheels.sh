#!/usr/bin/env bash
# The Python packages a GPU machine without internet may lack (for Python 3.12 there), as
# wheels in .whl/ to copy there with the checkout (scripts/device_check.sh installs them). The
# versions are those installed here, so both machines run the same code. Run it here, where
# pip reaches PyPI, before copying.
set -eu
cd "$(dirname "$0")/.."
# polars and its runtime (~54 MB) serve bench's iterate row and the CUDA evaluation test:
# with them the wheels may pass a copy's size limit, so copy them in a call of their own.
PACKAGES="segment-anything albumentations albucore simsimd stringzilla pydantic pydantic_core
annotated-types typing-inspection polars polars-runtime-32"
# shellcheck disable=SC2086  # one word a package
pins=$(python3 -m pip show $PACKAGES | awk '/^Name:/ {name = $2} /^Version:/ {print name "==" $2}')
platforms=""
for platform in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms="$platforms --platform ${platform}_x86_64"
done
rm -rf .whl
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp $platforms -d .whl $pins
ls .whl
du -sh .whl
