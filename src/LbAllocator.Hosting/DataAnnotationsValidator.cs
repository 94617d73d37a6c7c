using System.ComponentModel.DataAnnotations;
using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using Microsoft.Extensions.Options;

namespace LbAllocator.Hosting;

/// <summary>What <see cref="DataAnnotationsValidator{T}"/> needs kept of an options type when trimmed.</summary>
public static class DataAnnotationsValidator
{
    public const DynamicallyAccessedMemberTypes Members = DynamicallyAccessedMemberTypes.PublicParameterlessConstructor | DynamicallyAccessedMemberTypes.PublicProperties;
}

/// <summary>
/// Validates options as <c>ValidateDataAnnotations()</c> does, with the same rules and messages, but trim- and
/// NativeAOT-safe: the properties are those of <typeparamref name="T"/> (kept by its annotation), not looked up on the
/// runtime type through TypeDescriptor. Each property's attributes are checked ([Required] first); only when they all
/// pass does the type's own IValidatableObject run. The generated [OptionsValidator] would word every message
/// differently and run the type's own rules even after an attribute failed.
/// </summary>
public sealed class DataAnnotationsValidator<[DynamicallyAccessedMembers(DataAnnotationsValidator.Members)] T> : IValidateOptions<T>
    where T : class
{
    public ValidateOptionsResult Validate(string? name, T options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (name != Options.DefaultName)
        {
            return ValidateOptionsResult.Skip;
        }

        var results = new List<ValidationResult>();
        foreach (var property in typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.GetIndexParameters().Length > 0 || property.GetMethod is null)
            {
                continue;
            }

            var context = new ValidationContext(options, property.Name, null, null) { MemberName = property.Name };
            Validator.TryValidateValue(property.GetValue(options), context, results, property.GetCustomAttributes<ValidationAttribute>(inherit: true));
        }

        if (results.Count == 0 && options is IValidatableObject self)
        {
            results.AddRange(self.Validate(new ValidationContext(options, typeof(T).Name, null, null)).Where(r => r != ValidationResult.Success));
        }

        return results.Count == 0
            ? ValidateOptionsResult.Success
            : ValidateOptionsResult.Fail(results.Select(r =>
                $"DataAnnotation validation failed for '{typeof(T).Name}' members: '{string.Join(",", r.MemberNames)}' with the error: '{r.ErrorMessage}'."));
    }
}
