"""Request and response shapes of the OpenAI-compatible endpoints, as pydantic models.

Requests are parsed in strict mode: ``"temperature": "0.5"`` or ``"n": true`` is a 400, not
silently coerced. OpenAI fields that change nothing here (``frequency_penalty``, ``quality``, ...)
are ignored; fields whose meaning Atelier cannot honour (``tools``, ``n`` > 1 for chat, JSON
``response_format``, audio, ``stream`` for images) are refused by the services with a 400 that
names them: ignored, they would leave the caller with an answer it did not ask for.

Every model derives from ``OpenAIModel``, which ``openapi.py`` describes in OpenAPI 3.0 terms.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class OpenAIModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


# --- errors -----------------------------------------------------------------------------------
class OpenAIErrorBody(OpenAIModel):
    message: str = Field(description="What went wrong and what to do about it.")
    type: str = Field(description="invalid_request_error, authentication_error, permission_error, "
                                  "not_found_error, rate_limit_error, timeout_error or server_error.")
    param: str | None = Field(default=None, description="The request field at fault, when there is one.")
    code: str | None = Field(default=None, description="A stable machine-readable code, e.g. model_not_found, input_blocked.")
    details: dict[str, Any] | None = Field(default=None, description="Atelier's details: field errors, the job id, ...")


class OpenAIErrorResponse(OpenAIModel):
    error: OpenAIErrorBody


# --- models -------------------------------------------------------------------------------------
class AtelierModelInfo(OpenAIModel):
    plugin_version: str
    name: str
    modality: str
    endpoint: str = Field(description="The /v1/ endpoint that serves this model.")
    model_version: str = Field(description="The project's pinned model version, or 'default'.")


class OpenAIModelObject(OpenAIModel):
    id: str = Field(description="The plugin id: chatbot or image.")
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the project's pinned model version was registered, else the project's creation.")
    owned_by: str = "atelier"
    atelier: AtelierModelInfo


class OpenAIModelList(OpenAIModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModelObject]


# --- chat completions -----------------------------------------------------------------------------
class ChatMessageIn(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = Field(
        default=None, description="Text, or a list of {\"type\": \"text\", \"text\": ...} parts."
    )
    name: str | None = None


class StreamOptions(OpenAIModel):
    include_usage: bool = False


class AtelierChatFields(OpenAIModel):
    """Atelier's own fields of a chat request, beside OpenAI's (from the official client: extra_body={...});
    ``services.chat_job`` reads them."""

    conversation_id: str | None = Field(default=None, description="Atelier: continue this stored conversation.")
    use_knowledge: bool | None = Field(default=None, description="Atelier: answer from the project's knowledge base (default true).")
    top_k: int | None = Field(default=None, description="Atelier: how many knowledge-base passages to retrieve.")
    priority: int | None = Field(default=None, ge=0, le=9, description="Atelier: job priority, 0 (lowest) to 9.")


class CreateChatCompletion(AtelierChatFields):
    model: str = Field(description="chatbot (see GET /v1/models).")
    messages: list[ChatMessageIn] = Field(min_length=1, description="Oldest first; the last one must be the user's.")
    max_completion_tokens: int | None = Field(default=None, description="Longest reply in tokens (the plugin's max_new_tokens).")
    max_tokens: int | None = Field(default=None, description="Older name of max_completion_tokens.")
    temperature: float | None = Field(default=None, description="Omitted: the plugin's default (0, greedy).")
    top_p: float | None = None
    seed: int | None = Field(default=None, description="Same seed, same reply (0 to 2147483647).")
    stop: str | list[str] | None = Field(default=None, description="Up to 4 strings, each 1 to 32 characters.")
    stream: bool | None = Field(default=False, description="Answer with server-sent chat.completion.chunk events.")
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, description="Only 1 is supported.")
    user: str | None = Field(default=None, max_length=256, description="Accepted and ignored.")
    tools: list[Any] | None = Field(default=None, description="Not supported: must be empty.")
    functions: list[Any] | None = Field(default=None, description="Not supported: must be empty.")
    response_format: dict[str, Any] | None = Field(default=None, description="Only {\"type\": \"text\"}.")
    logprobs: bool | None = Field(default=None, description="Not available: must be false.")
    top_logprobs: int | None = Field(default=None, description="Not available (it needs logprobs): must be 0.")
    logit_bias: dict[str, Any] | None = Field(default=None, description="Not supported: must be empty.")
    modalities: list[str] | None = Field(default=None, description="Only [\"text\"].")
    audio: dict[str, Any] | None = Field(default=None, description="Not supported: the chatbot answers in text.")


class ChatMessageOut(OpenAIModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None


class ChatChoice(OpenAIModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: Literal["stop", "length", "content_filter"]
    logprobs: None = None


class CompletionUsage(OpenAIModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class KnowledgeSource(OpenAIModel):
    source_id: str
    chunk_id: str
    title: str
    score: float


class AtelierChatInfo(OpenAIModel):
    job_id: str
    job_url: str = Field(description="GET it with the same key: the job, its outputs and their review state.")
    status: str = Field(description="The job's status: succeeded when an answer is given.")
    review_state: str = Field(description="pending, approved, released, rejected or blocked.")
    final: bool = Field(description="true when the message content is the reply (approved, or released after screening).")
    sources: list[KnowledgeSource] = Field(description="Knowledge-base passages the reply drew on; empty unless final.")
    conversation_id: str | None = None
    notice: str | None = Field(default=None, description="Why the reply is not in the message, when it is not.")


class ChatCompletion(OpenAIModel):
    id: str = Field(description="chatcmpl-<job id without dashes>.")
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage | None = None
    atelier: AtelierChatInfo


class ChunkDelta(OpenAIModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(OpenAIModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: Literal["stop", "length", "content_filter"] | None = None
    logprobs: None = None


class ChatCompletionChunk(OpenAIModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    atelier: AtelierChatInfo | None = Field(default=None, description="On the chunk that carries finish_reason.")


# --- images ---------------------------------------------------------------------------------------
class CreateImage(OpenAIModel):
    prompt: str
    model: str | None = Field(default=None, description="image (the default).")
    n: int | None = Field(default=None, description="How many images (the plugin's count).")
    size: str | None = Field(default=None, description="WIDTHxHEIGHT, e.g. 512x512, or auto for the model's native size.")
    response_format: Literal["b64_json", "url"] | None = Field(
        default=None, description="b64_json (the default) or url: the authenticated /api/v1/outputs/... download."
    )
    output_format: str | None = Field(default=None, description="Only png.")
    background: Literal["transparent", "opaque", "auto"] | None = Field(default=None, description="auto or opaque: "
                                                                        "images are opaque; transparent is refused.")
    stream: bool | None = Field(default=None, description="Not supported: must be false (the answer comes when the job is done).")
    user: str | None = Field(default=None, max_length=256, description="Accepted and ignored.")
    # Atelier's own fields (from the official client: extra_body={...}).
    negative_prompt: str | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    priority: int | None = Field(default=None, ge=0, le=9)


class ImageData(OpenAIModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = Field(
        default=None, description="The start of the prompt the model read, when its text encoder cut the rest (the job's "
                                  "output names the words ignored in prompt_truncated); null when it read the whole prompt.",
    )
    output_id: str = Field(description="Atelier: the output this image is.")
    seed: int | None = Field(default=None, description="Atelier: submit it with n=1 to make this image again.")


class AtelierOutputState(OpenAIModel):
    output_id: str
    index: int
    review_state: str
    final: bool


class AtelierImagesInfo(OpenAIModel):
    job_id: str
    job_url: str
    status: str
    outputs: list[AtelierOutputState] = Field(description="Every image of the job with its review state.")
    withheld: int = Field(description="Images not in data because they are pending review, rejected or blocked.")
    notice: str | None = None


class ImagesResponse(OpenAIModel):
    created: int
    data: list[ImageData] = Field(description="Only images that may be used: approved, or released after screening.")
    output_format: Literal["png"] = "png"
    atelier: AtelierImagesInfo


# --- responses ------------------------------------------------------------------------------------
class CreateResponse(AtelierChatFields):
    model: str = Field(description="chatbot (see GET /v1/models).")
    input: str | list[dict[str, Any]] = Field(
        description="A user message as a string, or message items oldest first: {\"role\": user, assistant, system or "
                    "developer, \"content\": text or input_text / output_text parts}; the last one must be the user's.",
    )
    instructions: str | None = Field(default=None, description="A system message before the input.")
    max_output_tokens: int | None = Field(default=None, description="Longest reply in tokens (the plugin's max_new_tokens).")
    temperature: float | None = Field(default=None, description="Omitted: the plugin's default (0, greedy).")
    top_p: float | None = None
    stream: bool | None = Field(default=False, description="Answer with server-sent response.* events.")
    stream_options: dict[str, Any] | None = Field(default=None, description="Accepted and ignored.")
    previous_response_id: str | None = Field(
        default=None, description="Continue the conversation of this response (resp_..., of this project): its thread, "
                                  "with the replies that may be delivered, comes before the input (the turns of erased "
                                  "jobs left out). One erased: 400 previous_response_erased.",
    )
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16, description="Up to 16 pairs of strings (keys 64, values 512 characters at most), kept "
                                                 "with the job and returned with every answer about the response; erased "
                                                 "with its content.",
    )
    store: bool | None = Field(default=None, description="Only true: every job is kept for review and audit.")
    text: dict[str, Any] | None = Field(default=None, description="Only {\"format\": {\"type\": \"text\"}}; verbosity is ignored.")
    tools: list[Any] | None = Field(default=None, description="Not supported: must be empty.")
    tool_choice: str | dict[str, Any] | None = Field(default=None, description="Only none or auto (there are no tools).")
    parallel_tool_calls: bool | None = Field(default=None, description="Accepted and ignored.")
    reasoning: dict[str, Any] | None = Field(default=None, description="Not supported: the chatbot does not reason.")
    background: bool | None = Field(
        default=None, description="true: answer at once with the queued response instead of waiting for its job; follow it "
                                  "with GET /v1/responses/{id}, cancel it with POST /v1/responses/{id}/cancel. With "
                                  "stream: true it streams as usual.",
    )
    include: list[str] | None = Field(default=None, description="Not supported: must be empty.")
    top_logprobs: int | None = Field(default=None, description="Not available: must be 0.")
    prompt: dict[str, Any] | None = Field(default=None, description="Not supported (stored prompts are OpenAI's).")
    conversation: str | dict[str, Any] | None = Field(
        default=None, description="Not supported: use previous_response_id, or Atelier's conversation_id.",
    )
    n: int | None = Field(default=None, description="Only 1: one reply per request.")
    truncation: Literal["auto", "disabled"] | None = Field(
        default=None, description="Accepted and ignored: a continued thread keeps its first system message and latest turns.",
    )
    user: str | None = Field(default=None, max_length=256, description="Accepted and ignored.")
    safety_identifier: str | None = Field(default=None, max_length=256, description="Accepted and ignored.")
    seed: int | None = Field(default=None, description="Atelier: same seed, same reply (0 to 2147483647).")


class OutputText(OpenAIModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list, description="Always empty.")


class InputText(OpenAIModel):
    type: Literal["input_text"] = "input_text"
    text: str


class ResponseOutputMessage(OpenAIModel):
    id: str = Field(description="msg_<output id without dashes>.")
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[OutputText]


class ResponseInputMessage(OpenAIModel):
    id: str = Field(description="msg_<job id without dashes>_<index of the message in the job's input>.")
    type: Literal["message"] = "message"
    role: Literal["user", "system", "assistant"]
    status: Literal["completed"] = "completed"
    content: list[InputText | OutputText] = Field(description="input_text; output_text for the assistant's turns.")


class ResponseErrorInfo(OpenAIModel):
    code: str = Field(description="server_error (the job failed), invalid_prompt (blocked or refused input).")
    message: str


class IncompleteDetails(OpenAIModel):
    reason: Literal["max_output_tokens", "content_filter"]


class InputTokensDetails(OpenAIModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(OpenAIModel):
    reasoning_tokens: int = 0


class ResponseUsage(OpenAIModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class TextFormat(OpenAIModel):
    type: Literal["text"] = "text"


class TextConfig(OpenAIModel):
    format: TextFormat = Field(default_factory=TextFormat)


class AtelierResponseInfo(AtelierChatInfo):
    review_state: str | None = Field(description="pending, approved, released, rejected or blocked; null while the job runs.")


class ResponseObject(OpenAIModel):
    id: str = Field(description="resp_<job id without dashes>.")
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"] = Field(
        description="The job's: queued, in_progress (running), completed, incomplete (the reply hit max_output_tokens, or "
                    "was withheld: content_filter), failed, cancelled. A reply pending review is completed, with the notice."
    )
    completed_at: int | None = None
    model: str
    output: list[ResponseOutputMessage] = Field(description="The reply, or the notice in its place; empty while the job runs.")
    error: ResponseErrorInfo | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: None = None
    metadata: dict[str, str] = Field(default_factory=dict, description="The request's metadata, as sent ({} without).")
    previous_response_id: None = None
    parallel_tool_calls: bool = False
    tool_choice: Literal["none"] = "none"
    tools: list[Any] = Field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    background: bool = Field(default=False, description="true when created with background: true (then it can be cancelled).")
    text: TextConfig = Field(default_factory=TextConfig)
    usage: ResponseUsage | None = None
    atelier: AtelierResponseInfo


class ResponseDeleted(OpenAIModel):
    """The answer to ``DELETE /v1/responses/{id}``: the response's job was erased (OpenAI's client reads no body)."""

    id: str
    object: Literal["response"] = "response"
    deleted: Literal[True] = True


class ResponseInputItemList(OpenAIModel):
    object: Literal["list"] = "list"
    data: list[ResponseInputMessage]
    first_id: str | None
    last_id: str | None
    has_more: bool
