from kat_scheduler.context.context import KINDS, AppContext

__all__ = ["KINDS", "AppContext"]
