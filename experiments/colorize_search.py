"""Colorization of shapes: a random search over learning rate and width.

  python -m launch.local experiments/colorize_search.py --root=runs/colorize_search --parallel=2

Eight draws of the learning rate (log-uniform, 3e-4 to 1e-2) and the model's
channels, 1500 steps each; the table and plots give the shape-color accuracy
(circles red, squares blue) and PSNR against the learning rate, one line
per width.
"""

from ae_research import sweep

STUDY = sweep.Study(
    name='colorize_search',
    config='configs/colorize.py',
    points=sweep.random_search({
        'optimizer.learning_rate': sweep.log_uniform(3e-4, 1e-2),
        'model.features': sweep.choice([(8, 16), (16, 32), (32, 64)]),
    }, num_points=8, seed=0),
    metrics=['model.shape_color_accuracy', 'model.psnr', 'baseline.psnr'],
    overrides={'num_train_steps': 1500})
