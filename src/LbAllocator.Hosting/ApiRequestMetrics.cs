using System.Net;
using Prometheus;

namespace LbAllocator.Hosting;

/// <summary>
/// Sits under the Kubernetes client: names the component in the User-Agent (so API server audit logs and
/// tests can tell controller from speaker) and counts requests and errors by method and status code.
/// </summary>
public sealed class ApiRequestMetrics(string component, IMetricFactory metrics) : DelegatingHandler
{
    private readonly string _userAgent = $"lballocator-{component}/{typeof(ApiRequestMetrics).Assembly.GetName().Version?.ToString(3) ?? "0.0.0"}";

    private readonly Counter _requests = metrics.CreateCounter("lballocator_kubernetes_requests_total", "Requests to the Kubernetes API by method and status code.", ["method", "code"]);

    private readonly Counter _errors = metrics.CreateCounter("lballocator_kubernetes_errors_total", "Kubernetes API requests that failed: no response, 429 or a 5xx status.", ["method", "code"]);

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        request.Headers.UserAgent.Clear();
        request.Headers.TryAddWithoutValidation("User-Agent", _userAgent);
        var method = request.Method.Method;
        HttpResponseMessage response;
        try
        {
            response = await base.SendAsync(request, cancellationToken);
        }
        catch (HttpRequestException)
        {
            _requests.WithLabels(method, "error").Inc();
            _errors.WithLabels(method, "error").Inc();
            throw;
        }

        var code = (int)response.StatusCode;
        var codeText = code.ToString(System.Globalization.CultureInfo.InvariantCulture);
        _requests.WithLabels(method, codeText).Inc();
        if (code >= 500 || response.StatusCode == HttpStatusCode.TooManyRequests)
        {
            _errors.WithLabels(method, codeText).Inc();
        }

        return response;
    }
}
