using System.Text.Json;
using System.Text.RegularExpressions;

namespace LbAllocator.Cli;

/// <summary>
/// JSON written as block YAML, for objects a person reads and then applies. A string is written plain only where YAML
/// cannot read it as anything else; otherwise double-quoted with JSON's escapes, which YAML reads the same.
/// </summary>
internal static partial class YamlText
{
    public static void Write(TextWriter output, JsonElement value) => Write(output, value, 0, inList: false);

    private static void Write(TextWriter output, JsonElement value, int indent, bool inList)
    {
        var pad = new string(' ', indent);
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                var first = true;
                foreach (var property in value.EnumerateObject().Where(p => p.Value.ValueKind != JsonValueKind.Null))
                {
                    // A mapping in a list starts on the dash's line.
                    output.Write(first && inList ? "" : pad);
                    first = false;
                    output.Write(Scalar(property.Name));
                    output.Write(':');
                    WriteValue(output, property.Value, indent);
                }

                break;
            case JsonValueKind.Array:
                foreach (var item in value.EnumerateArray())
                {
                    output.Write(pad);
                    output.Write("- ");
                    if (IsCollection(item) && !IsEmpty(item))
                    {
                        if (item.ValueKind == JsonValueKind.Object)
                        {
                            Write(output, item, indent + 2, inList: true);
                        }
                        else
                        {
                            output.WriteLine();
                            Write(output, item, indent + 2, inList: false);
                        }
                    }
                    else
                    {
                        output.WriteLine(Scalar(item));
                    }
                }

                break;
            default:
                output.WriteLine(pad + Scalar(value));
                break;
        }
    }

    private static void WriteValue(TextWriter output, JsonElement value, int indent)
    {
        if (IsCollection(value) && !IsEmpty(value))
        {
            output.WriteLine();
            Write(output, value, indent + 2, inList: false);
        }
        else
        {
            output.Write(' ');
            output.WriteLine(Scalar(value));
        }
    }

    private static bool IsCollection(JsonElement value) => value.ValueKind is JsonValueKind.Object or JsonValueKind.Array;

    private static bool IsEmpty(JsonElement value) =>
        value.ValueKind == JsonValueKind.Object ? !value.EnumerateObject().Any(p => p.Value.ValueKind != JsonValueKind.Null) : value.GetArrayLength() == 0;

    private static string Scalar(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => Scalar(value.GetString()!),
        JsonValueKind.Object => "{}",
        JsonValueKind.Array => "[]",
        _ => value.GetRawText(), // numbers, true, false, null
    };

    private static string Scalar(string text) =>
        Plain().IsMatch(text) && !Special().IsMatch(text) ? text : JsonSerializer.Serialize(text, YamlTextJson.Default.String);

    /// <summary>Letters, digits and . _ / - only, not starting with a sign or a dot: no YAML indicator, no ': ' or ' #'.</summary>
    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9_./-]*$")]
    private static partial Regex Plain();

    /// <summary>What YAML 1.1 (as kubectl reads it) takes for a boolean, a null or a number.</summary>
    [GeneratedRegex("^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|null|Null|NULL|[0-9][0-9_]*(\\.[0-9_]*)?([eE][-+]?[0-9]+)?|0x[0-9a-fA-F_]+|0b[01_]+|0o?[0-7_]+|[0-9][0-9_]*(:[0-5]?[0-9])+)$")]
    private static partial Regex Special();
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class YamlTextJson : System.Text.Json.Serialization.JsonSerializerContext;
