"""The web dashboard (durably.dashboard): its pages over httpx, and a real browser."""
