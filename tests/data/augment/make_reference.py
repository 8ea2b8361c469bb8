"""Writes reference.json: outputs of mmpretrain's BLIP train augmentations on two small images.

Run from the repository root with the reference stack installed (see README.md):
    .venv/bin/python tests/data/augment/make_reference.py tests/data/augment/reference.json
Every transform is called the way mmpretrain's pipeline calls it, with prob=1 and no random
negation so that the output is deterministic; RandomResizedCrop gets its box fixed.
"""
import json
import sys

import cv2
import mmcv
import mmpretrain
import numpy as np
import PIL
from mmpretrain.datasets.transforms import (AutoContrast, Brightness, Equalize, RandAugment,
                                            RandomResizedCrop, Rotate, Sharpness, Shear)

H, W = 10, 18  # width 18: OpenCV's nearest warp runs 16 columns in SIMD and 2 in its scalar tail


def make_inputs():
    rng = np.random.default_rng(20240607)
    noise = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    smooth = np.stack([40 + 6 * xx + 3 * yy, 200 - 5 * xx + 2 * yy, 90 + 4 * yy + xx], -1)
    smooth = np.clip(smooth + rng.integers(-6, 7, (H, W, 3)), 0, 255).astype(np.uint8)
    return {'noise': noise, 'smooth': smooth}


def run(transform, img):
    return transform(dict(img=img.copy()))['img']


def hexpix(a):
    a = np.ascontiguousarray(a, dtype=np.uint8)
    return {'h': int(a.shape[0]), 'w': int(a.shape[1]), 'c': int(a.shape[2]), 'hex': a.tobytes().hex()}


def fixed_crop(top, left, h, w, size):
    t = RandomResizedCrop(scale=size, crop_ratio_range=(0.5, 1.0), interpolation='bicubic')
    t.rand_crop_params = lambda img: (top, left, h, w)  # instance attribute beats the method
    return t


def main(path):
    inputs = make_inputs()
    cases = []

    def add(name, op, params, src, out, exact=True):
        cases.append({'name': name, 'op': op, 'params': params, 'input': src, 'exact': exact,
                      'output': hexpix(out)})

    add('hflip/noise', 'hflip', {}, 'noise', mmcv.imflip(inputs['noise'], 'horizontal'))
    add('auto_contrast/smooth', 'auto_contrast', {}, 'smooth', run(AutoContrast(prob=1.0), inputs['smooth']))
    for src, img in inputs.items():
        add(f'equalize/{src}', 'equalize', {}, src, run(Equalize(prob=1.0), img))
    img = inputs['noise']
    for angle in (-15.0, 33.3):
        add(f'rotate_nearest/{angle}', 'rotate', {'angle': angle, 'interpolation': 'nearest'}, 'noise',
            run(Rotate(angle=angle, prob=1.0, random_negative_prob=0.0), img))
    add('rotate_bicubic/15', 'rotate', {'angle': 15.0, 'interpolation': 'bicubic'}, 'noise',
        run(Rotate(angle=15.0, prob=1.0, random_negative_prob=0.0, interpolation='bicubic'), img))
    for mag, direction in ((0.15, 'horizontal'), (-0.15, 'vertical')):
        add(f'shear_bicubic/{direction}/{mag}', 'shear', {'magnitude': mag, 'direction': direction,
                                                         'interpolation': 'bicubic'}, 'noise',
            run(Shear(magnitude=mag, prob=1.0, random_negative_prob=0.0, direction=direction), img))
    add('shear_nearest/vertical/0.27', 'shear', {'magnitude': 0.27, 'direction': 'vertical',
                                                 'interpolation': 'nearest'}, 'noise',
        run(Shear(magnitude=0.27, prob=1.0, random_negative_prob=0.0, direction='vertical',
                  interpolation='nearest'), img))
    add('brightness/1.45', 'brightness', {'factor': 1.45}, 'smooth',
        run(Brightness(magnitude=0.45, prob=1.0, random_negative_prob=0.0), inputs['smooth']))
    for factor in (0.6, 1.45):
        add(f'sharpness/{factor}', 'sharpness', {'factor': factor}, 'noise',
            run(Sharpness(magnitude=factor - 1, prob=1.0, random_negative_prob=0.0), img))
    # cv2.resize INTER_CUBIC: IPP (the default of OpenCV's wheels) and OpenCV's own code.
    for ipp in (False, True):
        cv2.ipp.setUseIPP(ipp)
        path_name = 'ipp' if ipp else 'opencv'
        for (ow, oh) in ((21, 13), (11, 7)):
            add(f'resize/{path_name}/{ow}x{oh}', 'resize', {'width': ow, 'height': oh, 'path': path_name},
                'smooth', mmcv.imresize(inputs['smooth'], (ow, oh), interpolation='bicubic', backend='cv2'),
                exact=not ipp)
        add(f'random_resized_crop/{path_name}', 'random_resized_crop',
            {'top': 2, 'left': 3, 'height': 8, 'width': 12, 'size': 16, 'path': path_name}, 'smooth',
            run(fixed_crop(2, 3, 8, 12, 16), inputs['smooth']), exact=not ipp)
    cv2.ipp.setUseIPP(True)

    # The magnitude RandAugment gives each BLIP policy at magnitude_level 5 of 10.
    policies = [
        dict(type='AutoContrast'), dict(type='Equalize'),
        dict(type='Rotate', magnitude_key='angle', magnitude_range=(0, 30)),
        dict(type='Brightness', magnitude_key='magnitude', magnitude_range=(0, 0.0)),
        dict(type='Sharpness', magnitude_key='magnitude', magnitude_range=(0, 0)),
        dict(type='Shear', magnitude_key='magnitude', magnitude_range=(0, 0.3), direction='horizontal'),
        dict(type='Shear', magnitude_key='magnitude', magnitude_range=(0, 0.3), direction='vertical'),
    ]
    ra = RandAugment(policies=policies, num_policies=2, magnitude_level=5)
    magnitudes = [float(t.random_magnitude()) if 'magnitude_range' in p else None
                  for t, p in zip(ra.transforms, ra.policies)]
    probs = [float(t.prob) for t in ra.transforms]
    negative = [float(t.random_negative_prob) for t in ra.transforms]

    doc = {
        'produced_by': 'tests/data/augment/make_reference.py',
        'versions': {'mmpretrain': mmpretrain.__version__, 'mmcv': mmcv.__version__, 'opencv': cv2.__version__,
                     'numpy': np.__version__, 'pillow': PIL.__version__},
        'channel_order': 'bgr',
        'inputs': {k: hexpix(v) for k, v in inputs.items()},
        'rand_augment': {'policy_magnitudes_level5': magnitudes, 'prob': probs, 'random_negative_prob': negative},
        'cases': cases,
    }
    # one case per line: small, and diffs stay readable
    body = {k: v for k, v in doc.items() if k != 'cases'}
    with open(path, 'w') as f:
        f.write(json.dumps(body)[:-1] + ',\n "cases": [\n')
        f.write(',\n'.join('  ' + json.dumps(c) for c in cases))
        f.write('\n ]\n}\n')


if __name__ == '__main__':
    main(sys.argv[1])
