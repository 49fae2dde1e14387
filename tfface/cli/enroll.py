"""tfface-enroll: add people to a facebank, list, rename and remove them.

    tfface-enroll --db bank.db NAME IMG...      enroll photos of one person
    tfface-enroll --db bank.db --folder DIR     one sub-folder per person (MultiFace facebank)
    tfface-enroll --db bank.db --list | --rename OLD NEW | --remove NAME

Each photo is committed on its own, so a killed enroll keeps everything before it; photos that
cannot be read or show no face are reported and skipped.
"""

import argparse
import os
import sys

import numpy as np
from tqdm import tqdm

from tfface.cli.common import IMAGE_EXTS, add_model_options, make_verifier, report_error
from tfface.errors import NoFaceError, TFFaceError

PROG = "tfface-enroll"


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:6]))
    p.add_argument("--db", required=True, help="facebank file (SQLite; created when missing)")
    p.add_argument("name", nargs="?", help="identity to enroll the images as")
    p.add_argument("images", nargs="*", help="photos of that person")
    p.add_argument("--folder", help="folder with one sub-folder of photos per person")
    p.add_argument("--list", action="store_true", help="list identities and image counts")
    p.add_argument("--rename", nargs=2, metavar=("OLD", "NEW"), help="rename an identity")
    p.add_argument("--remove", metavar="NAME", help="remove an identity and its embeddings")
    add_model_options(p)
    return p


def folder_jobs(folder):
    jobs = []
    for person in sorted(os.listdir(folder)):
        d = os.path.join(folder, person)
        if os.path.isdir(d) and not person.startswith("."):
            for f in sorted(os.listdir(d)):
                if f.lower().endswith(IMAGE_EXTS):
                    jobs.append((person, os.path.join(d, f)))
    return jobs


def enroll(args):
    from tfface.facebank import Facebank

    if args.folder:
        if not os.path.isdir(args.folder):
            raise TFFaceError(f"folder not found: {args.folder}")
        jobs = folder_jobs(args.folder)
    else:
        if not args.name or not args.images:
            raise TFFaceError("give NAME and IMAGES, or --folder, --list, --rename, --remove")
        jobs = [(args.name, img) for img in args.images]
    if not jobs:
        raise TFFaceError(f"no images to enroll in {args.folder}")
    verifier = make_verifier(args)
    probe = verifier.embedder(np.zeros((1, *verifier.input_size, 3), np.uint8))
    bank = Facebank(args.db, model_id=verifier.model_id, embedding_size=probe.shape[1])
    done, failed = 0, []
    for name, path in tqdm(jobs, desc="enroll", unit="img", file=sys.stderr,
                           disable=len(jobs) < 5 or None):
        try:
            emb = verifier.embed([path])[0]
        except NoFaceError:
            failed.append((path, "no face found"))
            continue
        except TFFaceError as err:
            failed.append((path, str(err)))
            continue
        bank.add(name, emb, source=os.path.abspath(path))
        done += 1
    for path, why in failed:
        print(f"{PROG}: skipped {path}: {why}", file=sys.stderr)
    people = len({n for n, _ in jobs})
    print(f"{PROG}: enrolled {done} image(s) of {people} identit{'y' if people == 1 else 'ies'}"
          f", {len(failed)} failed; facebank {args.db} has {len(bank)} identities")
    bank.close()
    return 0 if done else 2


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        from tfface.facebank import Facebank

        if args.list or args.rename or args.remove:
            if not os.path.isfile(args.db):
                raise TFFaceError(f"facebank not found: {args.db}")
            with Facebank(args.db) as bank:
                if args.rename:
                    bank.rename(*args.rename)
                    print(f"{PROG}: renamed {args.rename[0]!r} to {args.rename[1]!r}")
                if args.remove:
                    bank.remove(args.remove)
                    print(f"{PROG}: removed {args.remove!r}")
                if args.list:
                    for name, n in bank.identities():
                        print(f"{name}\t{n}")
            return 0
        return enroll(args)
    except Exception as err:  # noqa: BLE001 - reported in one line
        return report_error(PROG, err, args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
