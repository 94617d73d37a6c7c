using System.ComponentModel.DataAnnotations;
using System.Net;

namespace LbAllocator.Hosting;

/// <summary>Where /metrics, /healthz and /readyz are served.</summary>
public sealed class StatusOptions : IValidatableObject
{
    public const string Section = "Status";

    /// <summary>IP:port to listen on, for example 0.0.0.0:7472 or [::1]:8080; port 0 picks a free one.</summary>
    public string Address { get; set; } = "0.0.0.0:8080";

    public IPEndPoint ParseEndPoint() => IPEndPoint.Parse(Address);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!IPEndPoint.TryParse(Address, out var endPoint) || !Address.Contains(':', StringComparison.Ordinal) || endPoint.Port is < 0 or > 65535)
        {
            yield return new ValidationResult($"status address \"{Address}\" is not IP:port (for example 0.0.0.0:8080 or [::]:8080)", [nameof(Address)]);
        }
    }
}
