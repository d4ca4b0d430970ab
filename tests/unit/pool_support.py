"""What the environment pool's tests share: a sandbox that only counts what the pool does to it."""
from __future__ import annotations


class FakeSandbox:
    def __init__(self):
        self.alive, self.frozen, self.destroyed = True, False, 0

    def freeze(self): self.frozen = True
    def thaw(self): self.frozen = False
    def destroy(self): self.destroyed, self.alive = self.destroyed + 1, False
