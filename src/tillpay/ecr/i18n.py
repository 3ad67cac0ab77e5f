"""The ECR's words in each language, and declines said the way a cashier or customer understands."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "store": "Store",
        "terminal": "Till",
        "copy": "COPY",
        "total": "TOTAL",
        "customer_paid": "Customer paid",
        "customer_gets": "Customer gets back",
        "rate": "Rate",
        "order": "Order",
        "transaction": "Transaction",
        "refund_slip": "REFUND",
        "refunded": "REFUNDED",
        "remaining_amount": "Remaining amount",
        "refund_id": "Refund",
        "scan_to_refund": "Scan the QR code for refunds",
        "report": "REPORT",
        "ready": "Ready: scan an item",
        "scan_items": "Scan your items",
        "scan_code": "Now scan your payment code",
        "sending": "Sending the payment…",
        "unknown": "No answer from the gateway: checking…",
        "waiting": "Waiting for the customer to confirm in the wallet",
        "waiting_customer": "Please confirm the payment in your wallet",
        "paid": "PAID",
        "failed": "DECLINED",
        "cancelling": "Cancelling the payment…",
        "cancelled": "CANCELLED: nothing was charged",
        "unresolved": "The gateway has not answered the cancel yet; keep the customer here",
        "thanks": "Thank you! Take your receipt.",
        "basket_empty": "The basket is empty: scan an item first",
        "unknown_code": "Unknown code",
        "choose_language": "Choose your language",
        "operator_pin": "Operator PIN",
        "wrong_pin": "Wrong PIN",
        "recovering": "Checking unfinished orders with the gateway…",
        "seconds_left": "s left",
        "help": "F2 quantity  F3 remove  F4 clear  F5 refund  F6 reprint  F7 report  F8 close shift  Esc abort",
    },
    "zh": {
        "store": "门店",
        "terminal": "收银台",
        "copy": "副本",
        "total": "合计",
        "customer_paid": "顾客支付",
        "customer_gets": "退还顾客",
        "rate": "汇率",
        "order": "订单",
        "transaction": "交易号",
        "refund_slip": "退款",
        "refunded": "已退款",
        "remaining_amount": "剩余金额",
        "refund_id": "退款号",
        "scan_to_refund": "退款请扫描二维码",
        "report": "报表",
        "ready": "请扫描商品",
        "scan_items": "请扫描您的商品",
        "scan_code": "请出示付款码",
        "sending": "正在发送付款…",
        "unknown": "网关无应答：正在查询…",
        "waiting": "等待顾客在钱包中确认",
        "waiting_customer": "请在钱包中确认付款",
        "paid": "支付成功",
        "failed": "支付失败",
        "cancelling": "正在撤销付款…",
        "cancelled": "已撤销：未扣款",
        "unresolved": "网关尚未答复撤销，请顾客稍候",
        "thanks": "谢谢！请取走小票。",
        "basket_empty": "购物篮为空：请先扫描商品",
        "unknown_code": "未知条码",
        "choose_language": "请选择语言",
        "operator_pin": "操作员密码",
        "wrong_pin": "密码错误",
        "recovering": "正在与网关核对未完成的订单…",
        "seconds_left": "秒",
        "help": "F2 数量  F3 删除  F4 清空  F5 退款  F6 补打  F7 报表  F8 交班  Esc 取消",
    },
}

#: MAPI ``error`` values → what to tell the person at the till.
DECLINES: dict[str, dict[str, str]] = {
    "en": {
        "BUYER_BALANCE_NOT_ENOUGH": "Not enough money in the customer's wallet",
        "BUYER_IDENTITY_CODE_EXPIRED": "The payment code has expired: ask for a fresh one",
        "BUYER_IDENTITY_CODE_USED": "That payment code was already used: ask for a fresh one",
        "INVALID_BUYER_IDENTITY_CODE": "Not a valid payment code: scan it again",
        "INVALID_CODE_LIMIT_EXCEEDED": "Too many wrong codes: wait a few minutes",
        "BUYER_ENABLE_STATUS_FORBID": "The customer's account is blocked",
        "BUYER_NOT_EXIST": "Unknown customer",
        "ACCESS_FORBIDDEN": "This shop cannot take payments now: call the office",
        "BEYOND_PAY_RESTRICTION": "Over the customer's payment limit",
        "USER_PAYMENT_VERIFICATION_FAILED": "The customer entered a wrong PIN too often",
        "BUYER_REJECTED_PAYMENT": "The customer rejected the payment",
        "SESSION_TIMEOUT": "The customer did not confirm in time",
        "TRADE_HAS_CLOSE": "The payment was closed",
        "EXCHANGE_RATE_NOT_AVAILABLE": "No exchange rate for this currency: call the office",
        "CURRENCY_NOT_SUPPORT": "This currency is not accepted",
        "REPEAT_REQ_INCONSISTENT": "Order number clash: start the sale again",
        "SYSTEM_ERROR": "The payment system had an error",
        "REFUND_AMT_RESTRICTION": "More than what is left to refund",
        "REFUND_TIME_EXPIRED": "Too late to refund this payment",
        "TRADE_NOT_EXIST": "No such payment",
        "TRADE_STATUS_ERROR": "The payment cannot be changed in its current state",
    },
    "zh": {
        "BUYER_BALANCE_NOT_ENOUGH": "钱包余额不足",
        "BUYER_IDENTITY_CODE_EXPIRED": "付款码已过期，请刷新",
        "BUYER_IDENTITY_CODE_USED": "付款码已使用，请刷新",
        "INVALID_BUYER_IDENTITY_CODE": "付款码无效，请重新扫描",
        "BUYER_REJECTED_PAYMENT": "顾客拒绝了付款",
        "SESSION_TIMEOUT": "顾客未及时确认",
        "BEYOND_PAY_RESTRICTION": "超出付款限额",
    },
}


def t(lang: str, key: str) -> str:
    """One message in ``lang`` (English when missing)."""
    return MESSAGES.get(lang, MESSAGES["en"]).get(key) or MESSAGES["en"][key]


def decline(lang: str, error: str | None) -> str:
    """A MAPI error in plain words (the code itself when nothing better is known)."""
    if not error:
        return t(lang, "failed")
    return DECLINES.get(lang, {}).get(error) or DECLINES["en"].get(error) or error
