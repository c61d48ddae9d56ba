"""The payment port (authorize at booking, capture at completion, release at cancellation) and its adapters."""
