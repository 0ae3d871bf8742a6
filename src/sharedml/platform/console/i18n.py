"""UI text in English and Simplified Chinese, chosen per user (issue 15 item 5).

The English text is the key; :data:`ZH` maps it to Simplified Chinese. A
user's choice is stored with the user (``users.locale``); before login the
browser's ``Accept-Language`` decides. Text missing from a table falls back
to English, and ``tests/platform/console/test_console_i18n.py`` checks that
every string the templates ask for has a Chinese entry.
"""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = {"en": "English", "zh": "简体中文"}

ZH: dict[str, str] = {
    "sharedml console": "sharedml 控制台",
    "Home": "首页",
    "Nodes": "节点",
    "Datasets": "数据集",
    "Approvals": "审批",
    "Jobs": "任务",
    "New job": "新建任务",
    "Models": "模型",
    "Audit log": "审计日志",
    "Users": "用户",
    "Settings": "设置",
    "API docs": "API 文档",
    "Log in": "登录",
    "Log out": "退出登录",
    "Username": "用户名",
    "Password": "密码",
    "TOTP code (if enrolled)": "动态口令（如已绑定）",
    "Language": "语言",
    "Save": "保存",
    "Signed in as": "当前用户",
    "role": "角色",
    "Waiting for me": "待我处理",
    "Pending approvals": "待审批的数据使用",
    "Failed jobs": "失败的任务",
    "Nothing waits for you.": "没有待处理的事项。",
    "Job": "任务",
    "Dataset": "数据集",
    "State": "状态",
    "Reason": "原因",
    "Approve": "批准",
    "Deny": "拒绝",
    "Reason for the decision": "决定理由",
    "New user": "新建用户",
    "No model versions yet: a job's train step registers one when the job succeeds.": "暂无模型版本：任务成功后，其训练步骤会登记一个版本。",
    "Aliases": "别名",
    "Author": "作者",
    "Model": "模型",
    "Version id": "版本标识",
    "Spec hash": "任务定义哈希",
    "Deletion consented by": "已同意删除的参与方",
    "Model files each party holds": "各参与方持有的模型文件",
    "Each party's part stays at its node; the registry keeps its fingerprint.": "各参与方的模型部分保存在其节点上；登记处只保存其指纹。",
    "Fingerprint": "指纹",
    "Move an alias to this version": "将别名指向此版本",
    "Alias": "别名",
    "Move alias": "移动别名",
    "Delete": "删除",
    "A version is deleted once the owners of every training dataset have consented.": "所有训练数据集的所有者都同意后，该版本才会被删除。",
    "Consent to delete": "同意删除",
    "Change": "修改",
    "Create": "创建",
    "The user enrols TOTP after logging in (required when the settings say so).": "用户登录后自行绑定动态口令（设置要求时为必需）。",
    "Grant access": "授予访问权限",
    "User name (as they log in; your administrator can tell you)": "用户名（即其登录名，可向管理员获取）",
    "Grant": "授予",
    "CPU (% of a core)": "CPU（单核百分比）",
    "Memory (MB)": "内存（MB）",
    "Host load": "主机负载",
    "Your approval key (.key file; it stays in this browser)": "您的审批密钥（.key 文件，仅在本浏览器中使用，不会上传）",
    "Sign and approve": "签名并批准",
    "What you sign": "您签名的内容",
    "Choose your approval key file.": "请选择您的审批密钥文件。",
    "Party": "参与方",
    "Name": "名称",
    "Columns": "列",
    "Rows": "行数",
    "Type": "类型",
    "Metadata and schema only: the platform never holds rows.":
        "仅显示元数据和表结构：平台从不持有数据行。",
    "Status": "状态",
    "Last heartbeat": "最近心跳",
    "Address": "地址",
    "Certificate": "证书",
    "Registered": "注册时间",
    "Created": "创建时间",
    "Progress": "进度",
    "Filter": "筛选",
    "all": "全部",
    "Steps": "步骤",
    "Tasks": "子任务",
    "Metrics": "指标",
    "ROC curve": "ROC 曲线",
    "KS curve": "KS 曲线",
    "Lift by decile": "十分位提升度",
    "Feature importances": "特征重要性",
    "Splits made on each party's own features (each party counts its own; no threshold is shown).": "各参与方自有特征被用于分裂的次数（各方只统计自己的特征，不显示阈值）。",
    "Feature": "特征",
    "Splits": "分裂次数",
    "Share": "占比",
    "Model files": "模型文件",
    "Cancel job": "取消任务",
    "Step": "步骤",
    "Component": "组件",
    "Attempt": "尝试次数",
    "Node": "节点",
    "Verify chain": "校验哈希链",
    "Chain intact": "哈希链完整",
    "Chain broken": "哈希链已损坏",
    "entries": "条记录",
    "first bad entry": "首个损坏的记录",
    "Actor": "操作者",
    "Action": "操作",
    "Target": "对象",
    "Outcome": "结果",
    "Time": "时间",
    "Scheme": "方案",
    "Parties": "参与方",
    "Add step": "添加步骤",
    "Remove": "删除",
    "Start from template": "从模板开始",
    "Check": "校验",
    "Submit job": "提交任务",
    "The spec is valid.": "任务描述有效。",
    "Job spec (YAML)": "任务描述（YAML）",
    "Label column": "标签列",
    "none": "无",
    "Parameter": "参数",
    "Default": "默认值",
    "Description": "说明",
    "Runtime settings": "运行时设置",
    "Grants": "授权",
    "Permission": "权限",
    "Resource": "资源",
    "Disabled": "已停用",
    "TOTP": "动态口令",
    "yes": "是",
    "no": "否",
    "Two-factor login": "双因素登录",
    "Scan this code with an authenticator app, then enter the code it shows.":
        "用身份验证器应用扫描此二维码，然后输入其显示的动态口令。",
    "Secret (to type in instead)": "密钥（手动输入）",
    "Confirm": "确认",
    "TOTP enrolled.": "动态口令已绑定。",
    "Forbidden": "无权访问",
    "Not found": "未找到",
    "Invalid input": "输入无效",
    "What to do": "处理建议",
    "Back to the home page": "返回首页",
    "Your session ended; log in again.": "会话已结束，请重新登录。",
    "Version": "版本",
    "Path": "路径",
    "No metrics yet.": "暂无指标。",
    "Approval of this job's datasets": "本任务数据集的审批",
    "Decided": "决定时间",
    "Comment": "备注",
    "Users, roles and grants": "用户、角色和授权",
    "Enrol TOTP": "绑定动态口令",
    "Logs": "日志",
    "Dataset approvals": "数据集审批",
    "Required": "必填",
    "decile": "十分位",
    "lift": "提升度",
    "positive rate": "正例率",
}

TABLES = {"zh": ZH}


def choose(stored: str | None, accept_language: str | None) -> str:
    """The user's stored language, else the browser's first supported one, else English."""
    if stored in LANGUAGES:
        return stored
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag[:2] in LANGUAGES:
            return tag[:2]
    return "en"


def translator(lang: str) -> Callable[[str], str]:
    table = TABLES.get(lang, {})

    def gettext(text: str) -> str:
        return table.get(text, text)

    return gettext
