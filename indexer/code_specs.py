"""What differs between languages for the code parser: node type names, the tree-sitter queries for
definitions, references and imports, and each language's import reader. The parsing steps themselves
are the same for every language."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from tree_sitter import Node, Query

from repolm.indexer.code_imports import (
    BoundName,
    go_imports,
    java_imports,
    js_imports,
    python_imports,
    rust_imports,
)
from repolm.indexer.code_source import SourceFile
from repolm.indexer.languages import grammar


@dataclass(frozen=True)
class LanguageSpec:
    """What differs between languages."""

    definitions: str  # query; captures named after kinds, plus @variable on top-level names
    references: str  # query; @call (callee ending in the name), @call.named (has a name field), @inherit
    imports: str  # query; @import nodes handed to `read_imports`
    read_imports: Callable[[SourceFile, Node], list[BoundName]]
    comments: frozenset[str]
    attached: frozenset[str] = frozenset()  # siblings that precede a definition (decorators, attributes)
    # Parents wrapping a single definition: True when they are part of its signature (`export`).
    wrappers: dict[str, bool] = field(default_factory=dict)
    blocks: frozenset[str] = frozenset()  # body node types whose named children are statements
    flatten: frozenset[str] = frozenset()  # statement lists nested in a block (Go)
    colon_header: bool = False  # Python: the header ends at the ':' before the body


_JS_DEFINITIONS = """
[(function_declaration) (generator_function_declaration)] @function
(class_body (method_definition) @function)
(variable_declarator value: [(arrow_function) (function_expression) (generator_function)]) @function
(class_declaration) @class
(program [(lexical_declaration {var}) (variable_declaration {var})])
(program (export_statement declaration: [(lexical_declaration {var}) (variable_declaration {var})]))
""".format(var="(variable_declarator name: (identifier) @variable)")
_JS_CALLS = """
(call_expression function: [(identifier) (member_expression)] @call)
(new_expression constructor: [(identifier) (member_expression)] @call)
"""
_JS_IMPORTS = """
(import_statement) @import
(variable_declarator value: (call_expression function: (identifier) arguments: (arguments (string)))) @import
"""
_TS_TYPES = "[(type_identifier) (nested_type_identifier)]"
_JS_COMMON = {
    "read_imports": js_imports,
    "comments": frozenset({"comment"}),
    "attached": frozenset({"decorator"}),
    "wrappers": {"export_statement": True, "lexical_declaration": True, "variable_declaration": True},
    "blocks": frozenset({"statement_block", "class_body", "interface_body", "enum_body", "object_type"}),
}
_TS = LanguageSpec(
    definitions=_JS_DEFINITIONS
    + """
(public_field_definition value: [(arrow_function) (function_expression)]) @function
[(function_signature) (method_signature) (abstract_method_signature)] @function
(abstract_class_declaration) @class
(interface_declaration) @interface
(enum_declaration) @enum
(type_alias_declaration) @type
(internal_module) @module
""",
    references=_JS_CALLS
    + f"""
(extends_clause value: [(identifier) (member_expression)] @inherit)
(implements_clause {_TS_TYPES} @inherit)
(implements_clause (generic_type name: {_TS_TYPES} @inherit))
(extends_type_clause type: {_TS_TYPES} @inherit)
(extends_type_clause type: (generic_type name: {_TS_TYPES} @inherit))
""",
    imports=_JS_IMPORTS,
    **_JS_COMMON,
)
_JAVA_TYPES = "[(type_identifier) (scoped_type_identifier)]"
_RUST_CALLEE = "[(identifier) (scoped_identifier) (field_expression)]"
SPECS: dict[str, LanguageSpec] = {
    "python": LanguageSpec(
        definitions="""
(function_definition) @function
(class_definition) @class
(type_alias_statement) @type
(module (expression_statement (assignment left: (identifier) @variable)))
""",
        references="""
(call function: [(identifier) (attribute)] @call)
(class_definition superclasses: (argument_list [(identifier) (attribute)] @inherit))
""",
        imports="[(import_statement) (import_from_statement) (future_import_statement)] @import",
        read_imports=python_imports,
        comments=frozenset({"comment"}),
        wrappers={"decorated_definition": False},
        blocks=frozenset({"block"}),
        colon_header=True,
    ),
    "javascript": LanguageSpec(
        definitions=_JS_DEFINITIONS
        + "(field_definition value: [(arrow_function) (function_expression)]) @function",
        references=_JS_CALLS + "(class_heritage [(identifier) (member_expression)] @inherit)",
        imports=_JS_IMPORTS,
        **_JS_COMMON,
    ),
    "typescript": _TS,
    "tsx": _TS,
    "go": LanguageSpec(
        definitions="""
[(function_declaration) (method_declaration)] @function
(type_spec type: (struct_type)) @struct
(type_spec type: (interface_type)) @interface
[(type_spec) (type_alias)] @type
(source_file (var_declaration (var_spec name: (identifier) @variable)))
(source_file (var_declaration (var_spec_list (var_spec name: (identifier) @variable))))
(source_file (const_declaration (const_spec name: (identifier) @variable)))
""",
        references="""
(call_expression function: [(identifier) (selector_expression)] @call)
(field_declaration_list (field_declaration !name type: [(type_identifier) (qualified_type)] @inherit))
(interface_type (type_elem [(type_identifier) (qualified_type)] @inherit))
""",
        imports="(import_spec) @import",
        read_imports=go_imports,
        comments=frozenset({"comment"}),
        wrappers={"type_declaration": True},
        blocks=frozenset({"block", "field_declaration_list", "interface_type"}),
        flatten=frozenset({"statement_list"}),
    ),
    "rust": LanguageSpec(
        definitions="""
[(function_item) (function_signature_item)] @function
[(struct_item) (union_item)] @struct
(enum_item) @enum
(trait_item) @trait
(impl_item) @impl
(type_item) @type
(mod_item body: (_)) @module
(source_file [(const_item name: (identifier) @variable) (static_item name: (identifier) @variable)])
""",
        references=f"""
(call_expression function: {_RUST_CALLEE} @call)
(call_expression function: (generic_function function: {_RUST_CALLEE} @call))
(macro_invocation macro: [(identifier) (scoped_identifier)] @call)
(impl_item trait: [(type_identifier) (scoped_type_identifier)] @inherit)
(impl_item trait: (generic_type type: [(type_identifier) (scoped_type_identifier)] @inherit))
(trait_item bounds: (trait_bounds [(type_identifier) (scoped_type_identifier)] @inherit))
""",
        imports="(use_declaration) @import",
        read_imports=rust_imports,
        comments=frozenset({"line_comment", "block_comment"}),
        attached=frozenset({"attribute_item"}),
        blocks=frozenset({"block", "declaration_list", "field_declaration_list", "enum_variant_list"}),
    ),
    "java": LanguageSpec(
        definitions="""
[(method_declaration) (constructor_declaration)] @function
[(class_declaration) (record_declaration)] @class
[(interface_declaration) (annotation_type_declaration)] @interface
(enum_declaration) @enum
""",
        references=f"""
(method_invocation name: (identifier)) @call.named
(object_creation_expression type: {_JAVA_TYPES} @call)
(object_creation_expression type: (generic_type {_JAVA_TYPES} @call))
(superclass {_JAVA_TYPES} @inherit)
(superclass (generic_type {_JAVA_TYPES} @inherit))
(super_interfaces (type_list {_JAVA_TYPES} @inherit))
(super_interfaces (type_list (generic_type {_JAVA_TYPES} @inherit)))
(extends_interfaces (type_list {_JAVA_TYPES} @inherit))
(extends_interfaces (type_list (generic_type {_JAVA_TYPES} @inherit)))
""",
        imports="(import_declaration) @import",
        read_imports=java_imports,
        comments=frozenset({"line_comment", "block_comment"}),
        blocks=frozenset(
            {"block", "class_body", "interface_body", "enum_body", "constructor_body", "annotation_type_body"}
        ),
    ),
}

# Where a definition keeps its body and its name when it is not the "body"/"name" field.
BODY_PATH: dict[str, tuple[str, ...]] = {
    "variable_declarator": ("value", "body"),
    "public_field_definition": ("value", "body"),
    "field_definition": ("value", "body"),
    "type_spec": ("type",),
}
NAME_FIELD: dict[str, str] = {
    "field_definition": "property",
    "impl_item": "type",
    "type_alias_statement": "left",
}


@dataclass(frozen=True)
class Queries:
    # One query for definitions, references and imports: each query run is a walk of the whole
    # tree, which costs about as much as all the matching.
    everything: Query
    errors: Query  # ERROR nodes (unparsable text) and MISSING ones (a token the parser had to invent)


@cache
def queries_for(grammar_name: str) -> Queries:
    spec, language = SPECS[grammar_name], grammar(grammar_name)
    everything = "\n".join((spec.definitions, spec.references, spec.imports))
    return Queries(Query(language, everything), Query(language, "(ERROR) @error (MISSING) @error"))
