from kat_scheduler.context.context import AppContext

__all__ = ["AppContext"]
