#!/bin/bash
#
# Fetch Omniglot and Mini-ImageNet into ./data, as the original supervised-reptile did:
#   data/omniglot/<Alphabet>/characterNN/*.png           (all release zips merged)
#   data/miniimagenet/{train,val,test}/<wnid>/*.JPEG
#
# Usage: ./fetch_data.sh [omniglot] [miniimagenet]       (no argument: both)
# Settings (environment):
#   OMNIGLOT_URL           base URL, local folder or file:// URL holding <set>.zip
#   OMNIGLOT_SETS          release zips to merge (default: images_background images_evaluation)
#   MINIIMAGENET_METADATA  local copy of the original's metadata/miniimagenet folder
#   IMAGENET_TAR           local ILSVRC2012_img_train.tar to cut the images out of
#   IMAGENET_URL           where to download byte ranges of that tar from otherwise
#
# Each dataset is built in a temporary folder inside data/ and renamed into place only when
# complete, so an existing data/<dataset> is always whole (re-runs skip it) and a failure or
# Ctrl-C leaves nothing half-done behind.

set -euo pipefail

OMNIGLOT_URL=${OMNIGLOT_URL:-https://raw.githubusercontent.com/brendenlake/omniglot/master/python}
OMNIGLOT_SETS=${OMNIGLOT_SETS:-images_background images_evaluation}
IMAGENET_URL=${IMAGENET_URL:-http://www.image-net.org/challenges/LSVRC/2012/nnoupb/ILSVRC2012_img_train.tar}
METADATA_URL=https://raw.githubusercontent.com/openai/supervised-reptile/master/metadata/miniimagenet
SPLITS="train val test"

# The original's Mini-ImageNet split (64/16/20 classes); each class's CSV, fetched at run time,
# lists its 600 images as `<name>.JPEG,<first byte>-<last byte>` inside ILSVRC2012_img_train.tar.
wnids() {
    case $1 in
    train) echo n01532829 n01558993 n01704323 n01749939 n01770081 n01843383 n01910747 n02074367 \
        n02089867 n02091831 n02101006 n02105505 n02108089 n02108551 n02108915 n02111277 n02113712 \
        n02120079 n02165456 n02457408 n02606052 n02687172 n02747177 n02795169 n02823428 n02966193 \
        n03017168 n03047690 n03062245 n03207743 n03220513 n03337140 n03347037 n03400231 n03476684 \
        n03527444 n03676483 n03838899 n03854065 n03888605 n03908618 n03924679 n03998194 n04067472 \
        n04243546 n04251144 n04258138 n04275548 n04296562 n04389033 n04435653 n04443257 n04509417 \
        n04515003 n04596742 n04604644 n04612504 n06794110 n07584110 n07697537 n07747607 n09246464 \
        n13054560 n13133613 ;;
    val) echo n01855672 n02091244 n02114548 n02138441 n02174001 n02950826 n02971356 n02981792 \
        n03075370 n03417042 n03535780 n03584254 n03770439 n03773504 n03980874 n09256479 ;;
    test) echo n01930112 n01981276 n02099601 n02110063 n02110341 n02116738 n02129165 n02219486 \
        n02443484 n02871525 n03127925 n03146219 n03272010 n03544143 n03775546 n04146614 n04149813 \
        n04418357 n04522168 n07613480 ;;
    esac
}

die() { echo "fetch_data.sh: $*" >&2; exit 2; }

# A file:// URL is just a local folder: copy from it instead of going through the network.
omniglot_src=${OMNIGLOT_URL#file://}
is_local() { [[ $omniglot_src != *://* ]]; }

# --- Parse and check everything before touching data/, so bad input leaves no trace. ---
want_omniglot=0 want_miniimagenet=0
[ $# -gt 0 ] || set -- omniglot miniimagenet
for arg; do
    case $arg in
    omniglot) want_omniglot=1 ;;
    miniimagenet) want_miniimagenet=1 ;;
    *) die "unknown argument '$arg'; use 'omniglot' and/or 'miniimagenet' (none: both)" ;;
    esac
done
if [ $want_omniglot = 1 ] && [ ! -d data/omniglot ] && is_local; then
    [ -d "$omniglot_src" ] || die "OMNIGLOT_URL folder '$omniglot_src' does not exist; set OMNIGLOT_URL to a folder holding the Omniglot zips"
    for name in $OMNIGLOT_SETS; do
        [ -f "$omniglot_src/$name.zip" ] || die "'$omniglot_src/$name.zip' not found; put it there or set OMNIGLOT_URL/OMNIGLOT_SETS to where the zips are"
    done
fi
if [ $want_miniimagenet = 1 ] && [ ! -d data/miniimagenet ]; then
    if [ -n "${IMAGENET_TAR:-}" ] && [ ! -f "$IMAGENET_TAR" ]; then
        die "IMAGENET_TAR file '$IMAGENET_TAR' does not exist; point it at ILSVRC2012_img_train.tar or unset it to download"
    fi
    if [ -n "${MINIIMAGENET_METADATA:-}" ]; then
        for split in $SPLITS; do
            compgen -G "$MINIIMAGENET_METADATA/$split/*.csv" > /dev/null ||
                die "no '$MINIIMAGENET_METADATA/$split/*.csv' found; point MINIIMAGENET_METADATA at a folder with {train,val,test}/<wnid>.csv or unset it"
        done
    fi
fi

mkdir -p data
tmp=$(mktemp -d data/.fetch.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM  # turn Ctrl-C into a normal exit so the EXIT trap cleans up

extract() {  # zip, folder: unzip is not on every fresh machine, python3 is
    if command -v unzip > /dev/null; then unzip -q "$1" -d "$2"; else python3 -m zipfile -e "$1" "$2"; fi
}

fetch_omniglot() {
    mkdir "$tmp/omniglot"
    for name in $OMNIGLOT_SETS; do
        echo "Fetching omniglot/$name ..."
        if is_local; then
            cp "$omniglot_src/$name.zip" "$tmp/$name.zip"
        else
            curl -fsSL "$OMNIGLOT_URL/$name.zip" -o "$tmp/$name.zip" ||
                die "download of $OMNIGLOT_URL/$name.zip failed; check the network or set OMNIGLOT_URL to a local mirror"
        fi
        echo "Extracting omniglot/$name ..."
        extract "$tmp/$name.zip" "$tmp/unzipped"
        # Merge rather than move: sets may share alphabets (identical files just overwrite).
        cp -R "$tmp/unzipped/$name/." "$tmp/omniglot/"
        rm -rf "$tmp/unzipped" "$tmp/$name.zip"
    done
    mv "$tmp/omniglot" data/omniglot
}

fetch_miniimagenet() {
    local meta=${MINIIMAGENET_METADATA:-$tmp/metadata}
    if [ -z "${MINIIMAGENET_METADATA:-}" ]; then
        for split in $SPLITS; do
            mkdir -p "$meta/$split"
            for wnid in $(wnids "$split"); do
                curl -fsSL "$METADATA_URL/$split/$wnid.csv" -o "$meta/$split/$wnid.csv" ||
                    die "download of $METADATA_URL/$split/$wnid.csv failed; check the network or set MINIIMAGENET_METADATA"
            done
        done
    fi
    if [ -n "${IMAGENET_TAR:-}" ]; then
        # One process that opens the 138 GB tar once and seeks to each image's byte range.
        python3 - "$IMAGENET_TAR" "$meta" "$tmp/miniimagenet" "$SPLITS" <<'EOF'
import os, sys
tar_path, meta, out, splits = sys.argv[1:]
with open(tar_path, 'rb') as tar:
    for split in splits.split():
        print(f'Fetching Mini-ImageNet {split} set ...', flush=True)
        for csv in sorted(f for f in os.listdir(os.path.join(meta, split)) if f.endswith('.csv')):
            print(f'Fetching wnid: {csv[:-4]}', flush=True)
            dst = os.path.join(out, split, csv[:-4])
            os.makedirs(dst)
            for line in open(os.path.join(meta, split, csv)):
                if not line.strip():
                    continue
                name, span = line.strip().split(',')
                start, end = map(int, span.split('-'))
                tar.seek(start)
                data = tar.read(end - start + 1)
                if len(data) != end - start + 1 or data[:2] != b'\xff\xd8':  # JPEG start marker
                    print(f'fetch_data.sh: no JPEG at bytes {span} of {tar_path} ({name}); '
                          'IMAGENET_TAR must be the original ILSVRC2012_img_train.tar', file=sys.stderr)
                    sys.exit(2)
                with open(os.path.join(dst, name), 'wb') as f:
                    f.write(data)
EOF
    else
        for split in $SPLITS; do
            echo "Fetching Mini-ImageNet $split set ..."
            for csv in "$meta/$split"/*.csv; do
                wnid=$(basename "$csv" .csv)
                echo "Fetching wnid: $wnid"
                mkdir -p "$tmp/miniimagenet/$split/$wnid"
                while IFS=, read -r name range || [ -n "$name" ]; do
                    [ -n "$name" ] || continue
                    curl -fsS -r "$range" "$IMAGENET_URL" -o "$tmp/miniimagenet/$split/$wnid/$name" ||
                        die "download of bytes $range of $IMAGENET_URL failed; check the network or set IMAGENET_TAR"
                done < "$csv"
            done
        done
    fi
    mv "$tmp/miniimagenet" data/miniimagenet
}

for dataset in omniglot miniimagenet; do
    want=want_$dataset
    [ "${!want}" = 1 ] || continue
    if [ -d "data/$dataset" ]; then
        echo "data/$dataset already exists; skipping (delete it to fetch again)"
    else
        "fetch_$dataset"
    fi
done
