using System.Collections;
using System.Reflection;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>
/// The CRD YAML in config/crd and the C# types must describe the same fields: this walks both and fails
/// on any field, type or name that one has and the other lacks.
/// </summary>
public class CrdSchemaTests
{
    public static TheoryData<string, Type> Crds => new()
    {
        { "lballocator.io_ipaddresspools.yaml", typeof(V1Alpha1IPAddressPool) },
        { "lballocator.io_l2advertisements.yaml", typeof(V1Alpha1L2Advertisement) },
        { "lballocator.io_servicel2statuses.yaml", typeof(V1Alpha1ServiceL2Status) },
    };

    [Theory]
    [MemberData(nameof(Crds))]
    public void Yaml_and_csharp_types_agree(string file, Type type)
    {
        var crd = KubernetesYaml.Deserialize<V1CustomResourceDefinition>(File.ReadAllText(Path.Combine(RepositoryRoot(), "config", "crd", file)), strict: true);
        var entity = type.GetCustomAttribute<KubernetesEntityAttribute>()!;

        Assert.Equal(entity.Group, crd.Spec.Group);
        Assert.Equal(entity.Kind, crd.Spec.Names.Kind);
        Assert.Equal(entity.PluralName, crd.Spec.Names.Plural);
        Assert.Equal($"{entity.PluralName}.{entity.Group}", crd.Metadata.Name);
        Assert.Equal("Namespaced", crd.Spec.Scope);
        var version = Assert.Single(crd.Spec.Versions);
        Assert.Equal(entity.ApiVersion, version.Name);
        Assert.NotNull(version.Subresources?.Status);

        var problems = new List<string>();
        var schema = version.Schema.OpenAPIV3Schema;
        foreach (var part in new[] { "spec", "status" })
        {
            var property = JsonProperties(type).GetValueOrDefault(part);
            if (property is null)
            {
                // A CRD may keep an empty status object for the subresource without a C# field.
                Assert.True(schema.Properties[part].Properties is null or { Count: 0 }, $"{file}: {part} has fields but the C# type has none");
                continue;
            }

            Compare(schema.Properties[part], property.PropertyType, part, problems);
        }

        Assert.True(problems.Count == 0, $"{file} and {type.Name} disagree:\n" + string.Join("\n", problems));
    }

    [Theory]
    [MemberData(nameof(Crds))]
    public void Printer_columns_point_at_fields_that_exist(string file, Type type)
    {
        var crd = KubernetesYaml.Deserialize<V1CustomResourceDefinition>(File.ReadAllText(Path.Combine(RepositoryRoot(), "config", "crd", file)), strict: true);

        foreach (var column in crd.Spec.Versions[0].AdditionalPrinterColumns ?? [])
        {
            // Drop list filters and indexes ("[?(@.type==\"Valid\")]", "[0]"): they select items, not fields.
            var path = System.Text.RegularExpressions.Regex.Replace(column.JsonPath, @"\[[^\]]*\]", "").TrimStart('.').Split('.');
            var current = type;
            foreach (var segment in path)
            {
                var property = JsonProperties(current).GetValueOrDefault(segment);
                Assert.True(property is not null, $"{file}: printer column {column.Name} uses {column.JsonPath}, but {current.Name} has no {segment}");
                current = ElementType(property!.PropertyType) ?? Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            }
        }
    }

    private static void Compare(V1JSONSchemaProps schema, Type type, string path, List<string> problems)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        var expected = SchemaType(type);
        if (schema.Type != expected)
        {
            problems.Add($"{path}: YAML type {schema.Type}, C# {type.Name} ({expected})");
            return;
        }

        if (expected == "array")
        {
            Compare(schema.Items is V1JSONSchemaProps items ? items : KubernetesJson.Deserialize<V1JSONSchemaProps>(KubernetesJson.Serialize(schema.Items)), ElementType(type)!, path + "[]", problems);
            return;
        }

        if (expected != "object" || type == typeof(IDictionary<string, string>))
        {
            return;
        }

        var csharp = JsonProperties(type);
        var yaml = schema.Properties ?? new Dictionary<string, V1JSONSchemaProps>();
        foreach (var name in yaml.Keys.Except(csharp.Keys))
        {
            problems.Add($"{path}.{name}: in the YAML, not in {type.Name}");
        }

        foreach (var name in csharp.Keys.Except(yaml.Keys))
        {
            problems.Add($"{path}.{name}: in {type.Name}, not in the YAML");
        }

        foreach (var name in csharp.Keys.Intersect(yaml.Keys))
        {
            Compare(yaml[name], csharp[name].PropertyType, $"{path}.{name}", problems);
        }
    }

    private static string SchemaType(Type type) => type switch
    {
        _ when type == typeof(string) => "string",
        _ when type == typeof(bool) => "boolean",
        _ when type == typeof(int) || type == typeof(long) => "integer",
        _ when type == typeof(DateTime) => "string",
        _ when type == typeof(IDictionary<string, string>) => "object",
        _ when ElementType(type) is not null => "array",
        _ => "object",
    };

    private static Type? ElementType(Type type) =>
        type != typeof(string) && typeof(IEnumerable).IsAssignableFrom(type) && type.IsGenericType && type.GetGenericArguments().Length == 1
            ? type.GetGenericArguments()[0]
            : null;

    private static Dictionary<string, PropertyInfo> JsonProperties(Type type) =>
        type.GetProperties()
            .Where(p => p.GetCustomAttribute<JsonPropertyNameAttribute>() is not null)
            .ToDictionary(p => p.GetCustomAttribute<JsonPropertyNameAttribute>()!.Name);

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "LbAllocator.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }
}
