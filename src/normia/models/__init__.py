"""Models built from configs/model/*.yaml: nn.Modules with loss(batch) -> (loss, metrics). torch only."""
