"""Training-step throughput of MobileFaceNet + ArcFace: Keras 3 against PyTorch eager, same run.

    .venv/bin/python bench/train_throughput.py --torch-python /tmp/torch-venv/bin/python
    KERAS_BACKEND=jax python bench/train_throughput.py --batch 512 --classes 85742   # a GPU box

Both sides train the same network on the same synthetic batch: MobileFaceNet (Chen et al.
2018, Table 1: PReLU, BN eps 1e-5, no conv biases, linear GDC, 1x1 conv to the embedding, BN),
an ArcFace head (s = 64, m = 0.5, cos(theta + m) with arcface_torch's fallback) over
``--classes`` identities, softmax cross-entropy, SGD momentum 0.9 with weight decay 5e-4.
One step = forward + backward + update on ``--batch`` images of 112x112x3 float32.

The Keras side runs ``model.fit`` on an in-memory batch repeated (no input pipeline cost),
with ``jit_compile`` off and on; the PyTorch side (eager, fp32, CPU or CUDA) runs in the
interpreter given by ``--torch-python`` (torch is not a tfface dependency), started by this
script as ``--torch-worker``. Each side warms up, then times ``--steps`` steps; the best of
``--repeats`` timings counts (other processes on a shared machine only ever slow a run down).
Prints images/s per variant, parameter counts (they must match) and the ratio to PyTorch.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (expansion t, channels c, repeats n, first stride s), MobileFaceNet Table 1.
BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


# --- PyTorch side (runs in the torch interpreter; imports nothing from tfface) ---------------

def torch_worker(args):
    import math

    import torch
    import torch.nn.functional as F
    from torch import nn

    device = torch.device(args.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))

    def conv_bn(cin, cout, k, s=1, groups=1, act=True, pad=None):
        pad = k // 2 if pad is None else pad
        layers = [nn.Conv2d(cin, cout, k, s, pad, groups=groups, bias=False),
                  nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)]
        if act:
            layers.append(nn.PReLU(cout))
        return nn.Sequential(*layers)

    class Bottleneck(nn.Module):
        def __init__(self, cin, cout, t, s):
            super().__init__()
            hid = cin * t
            self.body = nn.Sequential(conv_bn(cin, hid, 1), conv_bn(hid, hid, 3, s, groups=hid),
                                      conv_bn(hid, cout, 1, act=False))
            self.residual = s == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    class MobileFaceNet(nn.Module):
        def __init__(self, emb=128):
            super().__init__()
            blocks = [conv_bn(3, 64, 3, 2), conv_bn(64, 64, 3, 1, groups=64)]
            cin = 64
            for t, c, n, s in BOTTLENECKS:
                for i in range(n):
                    blocks.append(Bottleneck(cin, c, t, s if i == 0 else 1))
                    cin = c
            blocks += [conv_bn(cin, 512, 1), conv_bn(512, 512, 7, groups=512, act=False, pad=0),
                       conv_bn(512, emb, 1, act=False)]
            self.features = nn.Sequential(*blocks)

        def forward(self, x):
            return torch.flatten(self.features(x), 1)

    class ArcFace(nn.Module):
        def __init__(self, dim, classes, s=64.0, m=0.5):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(dim, classes))
            nn.init.xavier_normal_(self.weight)
            self.s, self.m = s, m

        def forward(self, emb, labels):
            cos = (F.normalize(emb, dim=1) @ F.normalize(self.weight, dim=0)).clamp(-1, 1)
            target = cos.gather(1, labels[:, None])[:, 0]
            sin = (1 - target * target).clamp(1e-12, 1).sqrt()
            margin = target * math.cos(self.m) - sin * math.sin(self.m)
            fallback = target - math.sin(math.pi - self.m) * self.m
            margin = torch.where(target > math.cos(math.pi - self.m), margin, fallback)
            logits = cos.scatter(1, labels[:, None], margin[:, None])
            return logits * self.s

    if args.threads:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(args.threads)
    torch.manual_seed(0)
    net, head = MobileFaceNet().to(device), ArcFace(128, args.classes).to(device)
    params = [p for p in list(net.parameters()) + list(head.parameters())]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 3, 112, 112, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(head(net(x), y), y)
        loss.backward()
        opt.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"variant": f"pytorch {torch.__version__} eager fp32 {device.type}",
                      "images_per_second": args.batch * args.steps / best,
                      "params": sum(p.numel() for p in params),
                      "threads": torch.get_num_threads()}))


# --- Keras side ------------------------------------------------------------------------------

def keras_variant(args, jit):
    import keras
    import numpy as np

    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    sys.path.insert(0, ROOT)
    from training.heads import CombinedMarginHead
    from training.models import get_backbone
    from training.optimizers import make_optimizer

    keras.utils.set_random_seed(0)
    backbone = get_backbone("mobilefacenet", embedding_size=128)
    image = keras.Input((112, 112, 3), name="image")
    label = keras.Input((), dtype="int32", name="label")
    logits = CombinedMarginHead(args.classes, scale=64.0, m2=0.5, name="head")(
        [backbone(image), label])
    model = keras.Model({"image": image, "label": label}, logits)
    model.compile(optimizer=make_optimizer("sgd", 0.1, 5e-4, 0.9, model.trainable_variables),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 112, 112, 3), dtype=np.float32)
    y = rng.integers(0, args.classes, args.batch).astype(np.int32)
    batch = ({"image": x, "label": y}, y)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        data = tf.data.Dataset.from_tensors(batch).repeat()
    else:
        def forever():
            while True:
                yield batch
        data = forever()
    model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0, shuffle=False)
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0, shuffle=False)
        best = min(best, time.perf_counter() - t0)
    params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    return {"variant": f"keras {keras.__version__} {keras.backend.backend()} "
                       f"jit_compile={jit}",
            "images_per_second": args.batch * args.steps / best, "params": params}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="images per step")
    parser.add_argument("--classes", type=int, default=1000, help="identities of the head")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=2, help="timings; the best counts")
    parser.add_argument("--jit", choices=("both", "on", "off"), default="both",
                        help="Keras jit_compile variants to time")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for both sides (0: each library's default)")
    parser.add_argument("--torch-python", default="",
                        help="interpreter with torch for the reference (empty: skip it)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu or cuda")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", default="", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.torch_worker:
        torch_worker(args)
        return 0

    results = []
    if args.torch_python:
        cmd = [args.torch_python, os.path.abspath(__file__), "--torch-worker",
               "--batch", str(args.batch), "--classes", str(args.classes),
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--repeats", str(args.repeats), "--device", args.device,
               "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            print(f"train_throughput: error: torch reference failed:\n{done.stderr[-2000:]}",
                  file=sys.stderr)
            return 2
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{results[-1]['variant']:45s} {results[-1]['images_per_second']:9.1f} img/s",
              flush=True)
    for jit in {"both": (False, True), "on": (True,), "off": (False,)}[args.jit]:
        results.append(keras_variant(args, jit))
        print(f"{results[-1]['variant']:45s} {results[-1]['images_per_second']:9.1f} img/s",
              flush=True)
    torch_ref = next((r for r in results if r["variant"].startswith("pytorch")), None)
    print(f"batch {args.batch}, {args.classes} classes, 112x112, {os.cpu_count()} CPUs, "
          f"threads {args.threads or 'default'}; "
          f"params: " + ", ".join(f"{r['variant'].split()[0]} {r['params']:,}" for r in results))
    if torch_ref:
        for r in results:
            if r is not torch_ref:
                ratio = r["images_per_second"] / torch_ref["images_per_second"]
                r["ratio_to_pytorch"] = ratio
                print(f"ratio {r['variant']} / pytorch eager: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
