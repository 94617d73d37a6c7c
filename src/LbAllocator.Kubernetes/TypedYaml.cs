using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace LbAllocator.Kubernetes;

/// <summary>
/// Turns a YAML node tree into the JSON the target type expects, led by the type's <see cref="JsonTypeInfo"/>
/// rather than by reflection, so it works under NativeAOT (YamlDotNet's deserializer does not). The target decides
/// what a plain scalar is: <c>123</c> is a string for a string property and a number for an int. The scalar rules
/// (booleans, integer bases, nulls, merge keys) are YamlDotNet's, which KubernetesYaml used before, so manifests
/// read as they did. Every mismatch is a <see cref="TypedYamlException"/> at the node that causes it.
/// </summary>
internal sealed class TypedYaml : IDisposable
{
    /// <summary>Aliases may repeat a subtree many times over; a manifest never needs anywhere near this.</summary>
    internal const int MaxValues = 100_000;

    /// <summary>The same bound the reader puts on the text's nesting: a cycle of aliases must end somewhere.</summary>
    private const int MaxDepth = 100;

    /// <summary>Characters after which System.Text.Json writes a property in a path as ['name'] rather than .name.</summary>
    private static readonly SearchValues<char> PathSpecial = SearchValues.Create("$. '/\"[]()\t\n\r\f\b\\\u0085\u2028\u2029");

    private static readonly HashSet<string> TrueWords = new(["true", "y", "yes", "on"], StringComparer.OrdinalIgnoreCase);
    private static readonly HashSet<string> FalseWords = new(["false", "n", "no", "off"], StringComparer.OrdinalIgnoreCase);

    private readonly JsonSerializerOptions options;
    private readonly bool strict;
    private readonly Utf8JsonWriter writer;
    private readonly Dictionary<string, YamlNode> nodeAtPath = new(StringComparer.Ordinal);
    private readonly Dictionary<YamlMappingNode, List<KeyValuePair<YamlNode, YamlNode>>> merged = new(ReferenceEqualityComparer.Instance);
    private int values;

    private TypedYaml(JsonSerializerOptions options, bool strict, IBufferWriter<byte> output)
    {
        this.options = options;
        this.strict = strict;
        writer = new Utf8JsonWriter(output, new JsonWriterOptions { SkipValidation = true });
    }

    /// <summary>
    /// The object <paramref name="node"/> describes, as <paramref name="type"/>. Strictly, a key the type does not
    /// have is an error; otherwise it is left out.
    /// </summary>
    /// <exception cref="TypedYamlException">The node does not fit the type.</exception>
    public static object Deserialize(YamlNode node, Type type, JsonSerializerOptions options, bool strict)
    {
        var json = new ArrayBufferWriter<byte>();
        using var converter = new TypedYaml(options, strict, json);
        var info = options.GetTypeInfo(type);
        converter.Write(node, info, "$", 0);
        converter.writer.Flush();
        try
        {
            return JsonSerializer.Deserialize(json.WrittenSpan, info)
                ?? throw new TypedYamlException(node.Start, $"expected {Shape(type)}");
        }
        catch (JsonException e)
        {
            // What the types' own converters reject (a date, a quantity): point at the value they were given.
            throw new TypedYamlException(converter.NodeAt(e.Path)?.Start ?? node.Start, JsonMessage(e), e);
        }
    }

    public void Dispose() => writer.Dispose();

    private void Write(YamlNode node, JsonTypeInfo info, string path, int depth)
    {
        nodeAtPath.TryAdd(path, node);
        if (++values > MaxValues)
        {
            throw new TypedYamlException(node.Start, $"more than {MaxValues} values once aliases are expanded");
        }

        if (depth > MaxDepth)
        {
            throw new TypedYamlException(node.Start, $"nested more than {MaxDepth} levels deep once aliases are expanded");
        }

        CheckTag(node);
        if (IsNull(node))
        {
            writer.WriteNullValue();
            return;
        }

        switch (info.Kind)
        {
            case JsonTypeInfoKind.Object:
                WriteObject(node, info, path, depth);
                break;
            case JsonTypeInfoKind.Enumerable:
                WriteList(node, info, path, depth);
                break;
            case JsonTypeInfoKind.Dictionary:
                WriteDictionary(node, info, path, depth);
                break;
            default:
                WriteValue(node, info.Type, path, depth);
                break;
        }
    }

    private void WriteObject(YamlNode node, JsonTypeInfo info, string path, int depth)
    {
        if (node is not YamlMappingNode map)
        {
            // KubernetesYaml's words: it named what it found only for a scalar.
            throw new TypedYamlException(node.Start, node is YamlScalarNode ? "expected a mapping, found a string" : "expected a mapping");
        }

        var properties = info.Properties.ToDictionary(p => p.Name, StringComparer.Ordinal);
        writer.WriteStartObject();
        foreach (var (key, value) in Distinct(Pairs(map)))
        {
            var name = KeyName(key);
            if (!properties.TryGetValue(name, out var property) || property.Set is null)
            {
                if (strict)
                {
                    throw new TypedYamlException(key.Start, $"unknown field \"{name}\"");
                }

                continue;
            }

            // KubernetesYaml left a number or a bool at its default when given null; JSON would refuse it.
            if (IsNull(value) && property.PropertyType.IsValueType && Nullable.GetUnderlyingType(property.PropertyType) is null)
            {
                continue;
            }

            writer.WritePropertyName(name);
            Write(value, options.GetTypeInfo(property.PropertyType), Child(path, name), depth + 1);
        }

        writer.WriteEndObject();
    }

    private void WriteList(YamlNode node, JsonTypeInfo info, string path, int depth)
    {
        if (node is not YamlSequenceNode list)
        {
            throw new TypedYamlException(node.Start, $"expected a list, found {Found(node)}");
        }

        var element = options.GetTypeInfo(info.ElementType!);
        writer.WriteStartArray();
        for (var i = 0; i < list.Children.Count; i++)
        {
            Write(list.Children[i], element, $"{path}[{i}]", depth + 1);
        }

        writer.WriteEndArray();
    }

    private void WriteDictionary(YamlNode node, JsonTypeInfo info, string path, int depth)
    {
        if (node is not YamlMappingNode map)
        {
            throw new TypedYamlException(node.Start, $"expected a mapping, found {Found(node)}");
        }

        var element = options.GetTypeInfo(info.ElementType!);
        writer.WriteStartObject();
        foreach (var (key, value) in Distinct(Pairs(map), reportAt: map))
        {
            // KubernetesYaml's words for a dictionary's key, unlike a property's, did not name what it found.
            CheckTag(key);
            var name = key is YamlScalarNode { Value: var text } ? text ?? "" : throw new TypedYamlException(key.Start, "expected a string");
            writer.WritePropertyName(name);
            Write(value, element, Child(path, name), depth + 1);
        }

        writer.WriteEndObject();
    }

    /// <summary>A scalar, as the JSON the type's converter reads; or, for <c>object</c> and the like, whatever the node is.</summary>
    private void WriteValue(YamlNode node, Type type, string path, int depth)
    {
        var target = Nullable.GetUnderlyingType(type) ?? type;
        if (target == typeof(object) || target == typeof(JsonElement) || typeof(System.Text.Json.Nodes.JsonNode).IsAssignableFrom(target))
        {
            WriteUntyped(node, path, depth);
            return;
        }

        if (node is not YamlScalarNode { Value: var text })
        {
            // IntOrString, ResourceQuantity and dates are strings in YAML, whatever they hold.
            throw new TypedYamlException(node.Start, $"expected {(Type.GetTypeCode(target) is TypeCode.Object or TypeCode.DateTime ? "a string" : Shape(target))}");
        }

        text ??= "";
        try
        {
            switch (Type.GetTypeCode(target))
            {
                case TypeCode.Boolean:
                    writer.WriteBooleanValue(TrueWords.Contains(text) || (FalseWords.Contains(text) ? false : throw new FormatException($"The value \"{text}\" is not a valid YAML Boolean")));
                    break;
                case TypeCode.SByte or TypeCode.Int16 or TypeCode.Int32 or TypeCode.Int64:
                    var signed = ParseInteger(text);
                    writer.WriteNumberValue(InRange(target, signed) ? (long)signed : throw new OverflowException());
                    break;
                case TypeCode.Byte or TypeCode.UInt16 or TypeCode.UInt32 or TypeCode.UInt64:
                    var unsigned = ParseInteger(text);
                    writer.WriteNumberValue(InRange(target, unsigned) ? (ulong)unsigned : throw new OverflowException());
                    break;
                case TypeCode.Single or TypeCode.Double:
                    var real = double.Parse(text, NumberStyles.Float | NumberStyles.AllowThousands, CultureInfo.InvariantCulture);
                    writer.WriteNumberValue(double.IsFinite(real) ? real : throw new OverflowException());
                    break;
                case TypeCode.Decimal:
                    writer.WriteNumberValue(decimal.Parse(text, NumberStyles.Number, CultureInfo.InvariantCulture));
                    break;
                case TypeCode.Char:
                    writer.WriteStringValue(text.Length > 0 ? text[..1] : throw new FormatException("expected one character"));
                    break;
                default:
                    // KubernetesYaml took a byte[]'s text as its UTF-8 bytes; JSON carries bytes as base64.
                    if (target == typeof(byte[]))
                    {
                        writer.WriteBase64StringValue(Encoding.UTF8.GetBytes(text));
                    }
                    else if (target == typeof(string))
                    {
                        writer.WriteStringValue(text);
                    }
                    else
                    {
                        // What converters read from strings (IntOrString, ResourceQuantity, dates, enums): each is
                        // tried here, where its node is known, as a converter's error carries no JSON path.
                        Check(node, text, type);
                        writer.WriteStringValue(text);
                    }

                    break;
            }
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
        {
            throw new TypedYamlException(node.Start, e is OverflowException ? "number out of range" : ManifestReader.Message(e), e);
        }
    }

    private void Check(YamlNode node, string text, Type type)
    {
        var json = new ArrayBufferWriter<byte>();
        using (var value = new Utf8JsonWriter(json))
        {
            value.WriteStringValue(text);
        }

        try
        {
            JsonSerializer.Deserialize(json.WrittenSpan, options.GetTypeInfo(type));
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or NotSupportedException or OverflowException)
        {
            throw new TypedYamlException(node.Start, e is JsonException j ? JsonMessage(j) : ManifestReader.Message(e), e);
        }
    }

    /// <summary>Where the type says nothing: mappings, lists, and scalars as YAML's core schema reads them.</summary>
    private void WriteUntyped(YamlNode node, string path, int depth)
    {
        switch (node)
        {
            case YamlMappingNode map:
                writer.WriteStartObject();
                foreach (var (key, value) in Distinct(Pairs(map)))
                {
                    var name = KeyName(key);
                    writer.WritePropertyName(name);
                    WriteUntypedChild(value, Child(path, name), depth);
                }

                writer.WriteEndObject();
                break;
            case YamlSequenceNode list:
                writer.WriteStartArray();
                for (var i = 0; i < list.Children.Count; i++)
                {
                    WriteUntypedChild(list.Children[i], $"{path}[{i}]", depth);
                }

                writer.WriteEndArray();
                break;
            case YamlScalarNode { Style: ScalarStyle.Plain, Value: "true" or "True" or "TRUE" }:
                writer.WriteBooleanValue(true);
                break;
            case YamlScalarNode { Style: ScalarStyle.Plain, Value: "false" or "False" or "FALSE" }:
                writer.WriteBooleanValue(false);
                break;
            case YamlScalarNode { Style: ScalarStyle.Plain, Value: var text } when long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number):
                writer.WriteNumberValue(number);
                break;
            case YamlScalarNode { Style: ScalarStyle.Plain, Value: var text } when double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var real) && double.IsFinite(real):
                writer.WriteNumberValue(real);
                break;
            case YamlScalarNode scalar:
                writer.WriteStringValue(scalar.Value ?? "");
                break;
        }
    }

    private void WriteUntypedChild(YamlNode node, string path, int depth)
    {
        nodeAtPath.TryAdd(path, node);
        if (++values > MaxValues || depth + 1 > MaxDepth)
        {
            throw new TypedYamlException(node.Start, values > MaxValues ? $"more than {MaxValues} values once aliases are expanded" : $"nested more than {MaxDepth} levels deep once aliases are expanded");
        }

        CheckTag(node);
        if (IsNull(node))
        {
            writer.WriteNullValue();
        }
        else
        {
            WriteUntyped(node, path, depth + 1);
        }
    }

    /// <summary>YAML's own tags (!!str, !!map, ...) change nothing here; KubernetesYaml refused any other.</summary>
    private static void CheckTag(YamlNode node)
    {
        if (!node.Tag.IsEmpty && !node.Tag.Value.StartsWith("tag:yaml.org,2002:", StringComparison.Ordinal))
        {
            throw new TypedYamlException(node.Start, $"Encountered an unresolved tag '{node.Tag.Value}'");
        }
    }

    /// <summary>
    /// A mapping's pairs with merge keys (<c>&lt;&lt;: *base</c>, <c>&lt;&lt;: [*a, *b]</c>) spliced in where they stand,
    /// as YamlDotNet's MergingParser did. Each mapping is spliced once, however often aliases repeat it.
    /// </summary>
    private List<KeyValuePair<YamlNode, YamlNode>> Pairs(YamlMappingNode map)
    {
        if (merged.TryGetValue(map, out var known))
        {
            return known;
        }

        var spliced = new List<KeyValuePair<YamlNode, YamlNode>>();
        merged[map] = spliced; // a mapping merging itself sees itself as it stands so far
        foreach (var pair in map.Children)
        {
            if (pair.Key is YamlScalarNode { Value: "<<" } mergeKey)
            {
                foreach (var source in MergeSources(mergeKey, pair.Value))
                {
                    spliced.AddRange(Pairs(source));
                }
            }
            else
            {
                spliced.Add(pair);
            }
        }

        return spliced;
    }

    /// <summary>
    /// A key given twice (a merged one included) is an error strictly, met in order as KubernetesYaml met it;
    /// else the later one counts. KubernetesYaml pointed at a dictionary's duplicate by the dictionary, an object's by the key.
    /// </summary>
    private IEnumerable<KeyValuePair<YamlNode, YamlNode>> Distinct(List<KeyValuePair<YamlNode, YamlNode>> pairs, YamlNode? reportAt = null)
    {
        static string? Name(YamlNode key) => key is YamlScalarNode { Value: var name } ? name ?? "" : null;

        if (strict)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var pair in pairs)
            {
                if (Name(pair.Key) is { } name && !seen.Add(name))
                {
                    throw new TypedYamlException((reportAt ?? pair.Key).Start, $"Encountered duplicate key {name}");
                }

                yield return pair;
            }

            yield break;
        }

        var last = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < pairs.Count; i++)
        {
            if (Name(pairs[i].Key) is { } name)
            {
                last[name] = i;
            }
        }

        for (var i = 0; i < pairs.Count; i++)
        {
            if (Name(pairs[i].Key) is not { } name || last[name] == i)
            {
                yield return pairs[i];
            }
        }
    }

    /// <summary>What a merge key names: an alias of a mapping, or a list of them. An alias's node starts before its key.</summary>
    private static IEnumerable<YamlMappingNode> MergeSources(YamlNode key, YamlNode value)
    {
        static bool IsAlias(YamlNode node, YamlNode key) => node.Start.Index < key.Start.Index;

        switch (value)
        {
            case YamlMappingNode mapping when IsAlias(mapping, key):
                return [mapping];
            case YamlSequenceNode list when !IsAlias(list, key) && list.Children.All(item => item is YamlMappingNode && IsAlias(item, key)):
                return list.Children.Cast<YamlMappingNode>();
            default:
                throw new TypedYamlException(key.Start, "Unrecognized merge key pattern");
        }
    }

    /// <summary>A property's name; unlike a dictionary's key, its tag was never looked at.</summary>
    private static string KeyName(YamlNode key)
    {
        return key is YamlScalarNode { Value: var name } ? name ?? "" : throw new TypedYamlException(key.Start, $"expected a string, found {Found(key)}");
    }

    /// <summary>YAML's null: nothing, ~ or null, unquoted.</summary>
    internal static bool IsNull(YamlNode node) =>
        node is YamlScalarNode { Style: ScalarStyle.Plain or ScalarStyle.Any, Value: null or "" or "~" or "null" or "Null" or "NULL" };

    /// <summary>
    /// An integer as YamlDotNet reads one: a sign, then 0x hex, 0b binary, 0 octal, or decimal with _ separators
    /// and base-60 parts (1:30). Its parse errors are the framework's, which the reader turns into its own words.
    /// </summary>
    private static Int128 ParseInteger(string text)
    {
        if (text.Length == 0)
        {
            throw new FormatException("The input string '' was not in a correct format.");
        }

        var negative = text[0] == '-';
        var digits = text[0] is '-' or '+' ? text[1..] : text;
        UInt128 magnitude;
        if (digits.StartsWith('0') && digits.Length > 1)
        {
            var (numberBase, rest) = digits[1] switch
            {
                'b' => (2, digits[2..]),
                'x' => (16, digits[2..]),
                _ => (8, digits[1..]),
            };
            rest = rest.Replace("_", "", StringComparison.Ordinal);
            magnitude = numberBase == 16
                ? ulong.Parse(rest, NumberStyles.HexNumber, CultureInfo.InvariantCulture)
                : Convert.ToUInt64(rest, numberBase);
        }
        else
        {
            magnitude = 0;
            var chunks = digits.Split(':');
            for (var i = 0; i < chunks.Length; i++)
            {
                var chunk = ulong.Parse(chunks[i].Replace("_", "", StringComparison.Ordinal), CultureInfo.InvariantCulture);
                if (i > 0 && chunk >= 60)
                {
                    throw new FormatException($"Invalid sexagesimal (base-60) digit: '{chunks[i]}'. Digits after the first must be less than 60.");
                }

                magnitude = checked((magnitude * 60) + chunk);
            }
        }

        if (magnitude > ulong.MaxValue || (negative && magnitude > (UInt128)long.MaxValue + 1))
        {
            throw new OverflowException();
        }

        return negative ? -(Int128)magnitude : (Int128)magnitude;
    }

    private static bool InRange(Type type, Int128 value) => Type.GetTypeCode(type) switch
    {
        TypeCode.SByte => value >= sbyte.MinValue && value <= sbyte.MaxValue,
        TypeCode.Int16 => value >= short.MinValue && value <= short.MaxValue,
        TypeCode.Int32 => value >= int.MinValue && value <= int.MaxValue,
        TypeCode.Int64 => value >= long.MinValue && value <= long.MaxValue,
        TypeCode.Byte => value >= byte.MinValue && value <= byte.MaxValue,
        TypeCode.UInt16 => value >= ushort.MinValue && value <= ushort.MaxValue,
        TypeCode.UInt32 => value >= uint.MinValue && value <= uint.MaxValue,
        _ => value >= ulong.MinValue && value <= ulong.MaxValue,
    };

    /// <summary>How System.Text.Json names a property in <see cref="JsonException.Path"/>.</summary>
    private static string Child(string path, string name) => name.AsSpan().ContainsAny(PathSpecial)
        ? $"{path}['{name.Replace("'", "\\'", StringComparison.Ordinal)}']"
        : $"{path}.{name}";

    /// <summary>The node written at a JSON path, or the nearest one above it.</summary>
    private YamlNode? NodeAt(string? path)
    {
        while (!string.IsNullOrEmpty(path))
        {
            if (nodeAtPath.TryGetValue(path, out var node))
            {
                return node;
            }

            var cut = path.LastIndexOfAny(['.', '[']);
            path = cut > 0 ? path[..cut] : null;
        }

        return null;
    }

    /// <summary>A JsonException's message without its path and byte positions, which mean nothing in YAML.</summary>
    private static string JsonMessage(JsonException e)
    {
        var message = e.InnerException is { } inner and not JsonException ? inner.Message : e.Message;
        var cut = message.IndexOf(" Path: ", StringComparison.Ordinal);
        message = cut >= 0 ? message[..cut] : message;
        const string NotConverted = "The JSON value could not be converted to ";
        return message.StartsWith(NotConverted, StringComparison.Ordinal)
            ? $"expected {ManifestReader.Shape(message[NotConverted.Length..].TrimEnd('.'))}"
            : ManifestReader.Message(new FormatException(message));
    }

    private static string Shape(Type type) => ManifestReader.Shape(type.FullName ?? type.Name);

    private static string Found(YamlNode node) => node switch
    {
        YamlMappingNode => "a mapping",
        YamlSequenceNode => "a list",
        _ => "a string",
    };
}

/// <summary>A node that does not fit the type it is read as, and where it is.</summary>
internal sealed class TypedYamlException(Mark at, string message, Exception? inner = null) : Exception(message, inner)
{
    public Mark At { get; } = at;
}
