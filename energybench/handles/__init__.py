"""One model handle for every metric: checkpoints (.pt), torch.export programs (.pt2, rebuilt
from checked parts before torch reads them), RobustBench zoo models, and modules given in memory."""
