"""What complete copies of the paper's data sets hold: the numbers a run's results are
comparable under, stated once for the readers (which warn when data differs) and for
fetch_data.sh's checks (`fetch_data.py`).

Standard library only: fetch_data.py imports this under a bare system python3.
"""

# The Omniglot release (images_background + images_evaluation): every character has one
# drawing by each of 20 drawers.
OMNIGLOT_ALPHABETS = 50
OMNIGLOT_CHARACTERS = 1623
OMNIGLOT_DRAWINGS = 20

# Lake et al.'s one-shot classification benchmark (all_runs.zip): 20 runs of a 20-way task,
# one training drawing per class and 20 test drawings.
OMNIGLOT_RUNS = 20
OMNIGLOT_RUN_WAYS = 20


def omniglot_answer_key(text, run):
    """{test drawing: its training drawing} from the text of `run`'s class_labels.txt, whose
    lines are `runNN/test/itemNN.png runNN/training/classMM.png`, or None unless it names
    each of the run's OMNIGLOT_RUN_WAYS test and training drawings exactly once."""
    pairs = [line.split() for line in text.splitlines() if line.strip()]
    key = dict(pair for pair in pairs if len(pair) == 2)
    well_formed = all(test.startswith(f'{run}/test/') and training.startswith(f'{run}/training/')
                      for test, training in key.items())
    return key if well_formed and len(pairs) == len(key) == len(set(key.values())) == OMNIGLOT_RUN_WAYS else None


# The original's Mini-ImageNet split (64/16/20 classes) of ILSVRC2012_img_train.tar images,
# as its metadata/miniimagenet/<split>/<wnid>.csv files (commit 8f2b71c) list them.
MINIIMAGENET_WNIDS = {
    'train': (
        'n01532829 n01558993 n01704323 n01749939 n01770081 n01843383 n01910747 n02074367 '
        'n02089867 n02091831 n02101006 n02105505 n02108089 n02108551 n02108915 n02111277 n02113712 '
        'n02120079 n02165456 n02457408 n02606052 n02687172 n02747177 n02795169 n02823428 n02966193 '
        'n03017168 n03047690 n03062245 n03207743 n03220513 n03337140 n03347037 n03400231 n03476684 '
        'n03527444 n03676483 n03838899 n03854065 n03888605 n03908618 n03924679 n03998194 n04067472 '
        'n04243546 n04251144 n04258138 n04275548 n04296562 n04389033 n04435653 n04443257 n04509417 '
        'n04515003 n04596742 n04604644 n04612504 n06794110 n07584110 n07697537 n07747607 n09246464 '
        'n13054560 n13133613').split(),
    'val': (
        'n01855672 n02091244 n02114548 n02138441 n02174001 n02950826 n02971356 n02981792 '
        'n03075370 n03417042 n03535780 n03584254 n03770439 n03773504 n03980874 n09256479').split(),
    'test': (
        'n01930112 n01981276 n02099601 n02110063 n02110341 n02116738 n02129165 n02219486 '
        'n02443484 n02871525 n03127925 n03146219 n03272010 n03544143 n03775546 n04146614 n04149813 '
        'n04418357 n04522168 n07613480').split(),
}

# Images per class: 600, except these 16 classes, whose CSVs list 597-599 (59,981 in all).
MINIIMAGENET_IMAGES = 600
_FEWER_IMAGES = {
    'n02108551': 599, 'n03220513': 599, 'n03337140': 599, 'n03527444': 599, 'n03854065': 599,
    'n07584110': 599, 'n07747607': 599, 'n13133613': 599,  # train
    'n02138441': 599, 'n02174001': 598, 'n03075370': 599, 'n03535780': 597,  # val
    'n02099601': 599, 'n03544143': 599, 'n04522168': 599, 'n07613480': 599,  # test
}


def miniimagenet_images(wnid):
    """How many images the original's Mini-ImageNet has for class `wnid` (for a class
    outside it: the nominal 600)."""
    return _FEWER_IMAGES.get(wnid, MINIIMAGENET_IMAGES)
